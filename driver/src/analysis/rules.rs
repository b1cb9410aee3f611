//! What each encryption mode allows (docs/DESIGN.md, "The client pipeline", step 2).
//!
//! Every check takes operands that the walker has already reduced, so the
//! policy lives here in one place: a deterministic column may be stored,
//! read, compared for equality with a parameter or a column of its own
//! setting, grouped and counted; a randomized one only stored, read, tested
//! for NULL and counted; a ciphertext column this client cannot use only
//! read, tested for NULL and counted. Parameters are bound as they are met.

use super::operand::{CiphertextColumn, Operand, SourceColumn};
use super::parameters::ParameterBindings;
use super::{
    BoxedRefusal, ParameterTarget, ParameterUse, Refusal, DETERMINISTIC_ALLOWED, RANDOMIZED_ALLOWED,
};
use crate::cell::EncryptionMode;

/// The refusal for doing `attempted` to `column`, naming what it allows.
pub(super) fn refuse(column: &CiphertextColumn, attempted: impl Into<String>) -> BoxedRefusal {
    Box::new(match &column.encryption {
        Ok(encryption) => Refusal::NotAllowed {
            column: column.column.clone(),
            mode: encryption.mode,
            attempted: attempted.into(),
            allowed: match encryption.mode {
                EncryptionMode::Deterministic => DETERMINISTIC_ALLOWED,
                EncryptionMode::Randomized => RANDOMIZED_ALLOWED,
            },
        },
        Err(reason) => Refusal::UnusableColumn {
            column: column.column.clone(),
            reason: reason.clone(),
            attempted: attempted.into(),
        },
    })
}

/// A value read out (select list, `RETURNING`, `EXISTS`): anything may be
/// read; a parameter read back is plaintext.
pub(super) fn read(
    bindings: &mut ParameterBindings,
    operand: &Operand,
) -> Result<(), BoxedRefusal> {
    match operand {
        Operand::Parameter(number)
        | Operand::Column(SourceColumn::ParameterElements { number, .. }) => {
            bindings.bind_plaintext(*number)
        }
        Operand::Row(items) => items.iter().try_for_each(|item| read(bindings, item)),
        _ => Ok(()),
    }
}

/// Refuses a ciphertext column (also inside a row) without binding anything.
pub(super) fn forbid_ciphertext(operand: &Operand, attempted: &str) -> Result<(), BoxedRefusal> {
    match operand {
        Operand::Column(SourceColumn::Ciphertext(column)) => Err(refuse(column, attempted)),
        Operand::Row(items) => items
            .iter()
            .try_for_each(|item| forbid_ciphertext(item, attempted)),
        _ => Ok(()),
    }
}

/// An operand consumed by a function, an operator other than equality, a
/// cast, `ORDER BY` or a condition: the server would compute on plaintext,
/// which ciphertext cannot give it.
pub(super) fn use_as_input(
    bindings: &mut ParameterBindings,
    operand: &Operand,
    attempted: &str,
) -> Result<(), BoxedRefusal> {
    forbid_ciphertext(operand, attempted)?;
    read(bindings, operand)
}

/// `GROUP BY`, `DISTINCT`, `PARTITION BY`, `COUNT(DISTINCT x)` and
/// deduplicating set operations: they compare values for equality, which
/// only deterministic cells support. Binds nothing: the operand may be an
/// output column whose consumer binds it.
pub(super) fn require_groupable(operand: &Operand, clause: &str) -> Result<(), BoxedRefusal> {
    match operand {
        Operand::Column(SourceColumn::Ciphertext(column)) => match column.encryption() {
            Some(encryption) if encryption.mode == EncryptionMode::Deterministic => Ok(()),
            _ => Err(refuse(column, clause)),
        },
        Operand::Row(items) => items
            .iter()
            .try_for_each(|item| require_groupable(item, clause)),
        _ => Ok(()),
    }
}

/// `left <operator> right` where the operator only asks whether two values
/// are equal (`=`, `<>`, `IN`, `IS [NOT] DISTINCT FROM`, `JOIN … USING`).
pub(super) fn compare_for_equality(
    bindings: &mut ParameterBindings,
    left: &Operand,
    right: &Operand,
    operator: &str,
) -> Result<(), BoxedRefusal> {
    if let (Operand::Row(left_items), Operand::Row(right_items)) = (left, right) {
        if left_items.len() == right_items.len() {
            return left_items
                .iter()
                .zip(right_items)
                .try_for_each(|(left, right)| {
                    compare_for_equality(bindings, left, right, operator)
                });
        }
    }
    let (column, other) = match (left.ciphertext_column(), right.ciphertext_column()) {
        (Some(column), _) => (column, right),
        (None, Some(column)) => (column, left),
        (None, None) => {
            // A row against a scalar (or rows of different widths) is not
            // element-wise, so treat both sides as plain inputs.
            let attempted = format!("comparison by {operator}");
            use_as_input(bindings, left, &attempted)?;
            return use_as_input(bindings, right, &attempted);
        }
    };
    let encryption = match column.encryption() {
        Some(encryption) if encryption.mode == EncryptionMode::Deterministic => encryption,
        _ => return Err(refuse(column, format!("comparison by {operator}"))),
    };
    match other {
        Operand::Parameter(number) => bindings.bind(
            *number,
            ParameterTarget::Encrypted {
                column: column.column.clone(),
                encryption: encryption.clone(),
                usage: ParameterUse::Compare,
            },
        ),
        // `JOIN unnest($n) u(x) ON ssn = u.x`: each element is compared.
        Operand::Column(SourceColumn::ParameterElements { number, .. }) => bindings.bind(
            *number,
            ParameterTarget::Encrypted {
                column: column.column.clone(),
                encryption: encryption.clone(),
                usage: ParameterUse::CompareAny,
            },
        ),
        Operand::Null => Ok(()),
        Operand::Literal | Operand::Default => Err(refuse(
            column,
            format!("a literal compared with it by {operator}"),
        )),
        Operand::Column(SourceColumn::Plaintext { label, .. }) => Err(refuse(
            column,
            format!("comparison by {operator} with plaintext column {label}"),
        )),
        Operand::Column(SourceColumn::Ciphertext(other_column)) => {
            same_setting(column, other_column, &format!("comparison by {operator}"))
        }
        Operand::Row(_) | Operand::Computed => Err(refuse(
            column,
            format!(
                "comparison by {operator} with an expression that is not a parameter \
                 or a column of the same setting"
            ),
        )),
    }
}

/// `left = ANY(array)` / `left <> ALL(array)`: each element is compared for
/// equality, so a parameter here is an array of cells.
pub(super) fn compare_with_array(
    bindings: &mut ParameterBindings,
    left: &Operand,
    array: &Operand,
    operator: &str,
) -> Result<(), BoxedRefusal> {
    let Some(column) = left.ciphertext_column() else {
        use_as_input(bindings, left, operator)?;
        return use_as_input(bindings, array, operator);
    };
    let encryption = match column.encryption() {
        Some(encryption) if encryption.mode == EncryptionMode::Deterministic => encryption,
        _ => return Err(refuse(column, operator)),
    };
    match array {
        Operand::Parameter(number) => bindings.bind(
            *number,
            ParameterTarget::Encrypted {
                column: column.column.clone(),
                encryption: encryption.clone(),
                usage: ParameterUse::CompareAny,
            },
        ),
        Operand::Null => Ok(()),
        _ => Err(refuse(
            column,
            format!("{operator} over an expression that is not a parameter"),
        )),
    }
}

/// `value` stored into `target` (`INSERT`, `UPDATE … SET`, `ON CONFLICT … DO UPDATE`).
pub(super) fn store(
    bindings: &mut ParameterBindings,
    target: &SourceColumn,
    value: &Operand,
) -> Result<(), BoxedRefusal> {
    let target = match target {
        // (Targets are table columns; `unnest` columns are never one.)
        SourceColumn::Plaintext { label, .. } | SourceColumn::ParameterElements { label, .. } => {
            // Ciphertext copied into a plaintext column could never be
            // decrypted again (nor checked against its column), so refuse it.
            let attempted = format!("copying it into plaintext column {label}");
            return use_as_input(bindings, value, &attempted);
        }
        SourceColumn::Ciphertext(target) => target,
    };
    if matches!(value, Operand::Null | Operand::Default) {
        return Ok(());
    }
    let Some(encryption) = target.encryption() else {
        return Err(refuse(target, "storing a value other than NULL or DEFAULT"));
    };
    match value {
        Operand::Parameter(number) => bindings.bind(
            *number,
            ParameterTarget::Encrypted {
                column: target.column.clone(),
                encryption: encryption.clone(),
                usage: ParameterUse::Store,
            },
        ),
        // `INSERT … SELECT … FROM unnest($n)`, `UPDATE … FROM unnest($n)`:
        // each element is stored into a row.
        Operand::Column(SourceColumn::ParameterElements { number, .. }) => bindings.bind(
            *number,
            ParameterTarget::Encrypted {
                column: target.column.clone(),
                encryption: encryption.clone(),
                usage: ParameterUse::StoreEach,
            },
        ),
        Operand::Literal => Err(refuse(target, "a literal stored into it")),
        Operand::Column(SourceColumn::Plaintext { label, .. }) => Err(refuse(
            target,
            format!("storing plaintext column {label} into it"),
        )),
        Operand::Column(SourceColumn::Ciphertext(source)) => {
            same_setting(target, source, "copying a column into it")
        }
        _ => Err(refuse(
            target,
            "storing an expression that is not a parameter, NULL, DEFAULT \
             or a column of the same setting",
        )),
    }
}

/// Checks the alternatives that fill one result column (`UNION` branches,
/// `VALUES` rows): ciphertext may only be combined with `NULL` and columns of
/// the same setting, and only deterministic cells can be deduplicated.
/// Binds nothing: the consumer of the result column does.
pub(super) fn combine(
    values: &[Operand],
    operation: &str,
    compares: bool,
) -> Result<(), BoxedRefusal> {
    for value in values {
        if let Operand::Row(_) = value {
            forbid_ciphertext(value, &format!("a row value in {operation}"))?;
        }
    }
    let Some(column) = values.iter().find_map(Operand::ciphertext_column) else {
        return Ok(());
    };
    for value in values {
        match value {
            Operand::Null => {}
            Operand::Column(SourceColumn::Ciphertext(other)) => {
                match (column.encryption(), other.encryption()) {
                    (Some(_), Some(_)) => same_setting(column, other, operation)?,
                    // Two unusable columns can be read side by side (and
                    // fail to decrypt) but never deduplicated.
                    (None, None) if !compares => {}
                    (None, _) => {
                        return Err(refuse(column, format!("combining it in {operation}")))
                    }
                    (Some(_), None) => {
                        return Err(refuse(other, format!("combining it in {operation}")))
                    }
                }
            }
            _ => {
                return Err(refuse(
                    column,
                    format!(
                        "combining it in {operation} with a value that is not a column \
                         of the same setting"
                    ),
                ))
            }
        }
    }
    if compares {
        require_groupable(
            &Operand::Column(SourceColumn::Ciphertext(column.clone())),
            operation,
        )?;
    }
    Ok(())
}

/// Two ciphertext columns meet (compared, copied, combined): only columns
/// of one known setting hold comparable cells.
fn same_setting(
    column: &CiphertextColumn,
    other: &CiphertextColumn,
    attempted: &str,
) -> Result<(), BoxedRefusal> {
    match (column.encryption(), other.encryption()) {
        (Some(mine), Some(theirs)) if mine.setting_id == theirs.setting_id => Ok(()),
        (Some(mine), Some(theirs)) => Err(Box::new(Refusal::SettingMismatch {
            attempted: attempted.to_owned(),
            left: Box::new((column.column.clone(), mine.clone())),
            right: Box::new((other.column.clone(), theirs.clone())),
        })),
        (None, _) => Err(refuse(column, attempted)),
        (Some(_), None) => Err(refuse(other, attempted)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unboxed(result: Result<(), BoxedRefusal>) -> Result<(), Refusal> {
        result.map_err(|refusal| *refusal)
    }
    use crate::analysis::{ColumnEncryption, ColumnName};

    fn ciphertext(name: &str, setting: Option<(u32, EncryptionMode)>) -> SourceColumn {
        SourceColumn::Ciphertext(CiphertextColumn {
            column: ColumnName::new("public", "t", name),
            encryption: setting
                .map(|(setting_id, mode)| ColumnEncryption {
                    setting_id,
                    setting_name: format!("s{setting_id}").into(),
                    mode,
                })
                .ok_or_else(|| "no verified assignment".into()),
        })
    }

    fn column(name: &str, setting: Option<(u32, EncryptionMode)>) -> Operand {
        Operand::Column(ciphertext(name, setting))
    }

    const DET1: Option<(u32, EncryptionMode)> = Some((1, EncryptionMode::Deterministic));
    const DET3: Option<(u32, EncryptionMode)> = Some((3, EncryptionMode::Deterministic));
    const RND2: Option<(u32, EncryptionMode)> = Some((2, EncryptionMode::Randomized));

    #[test]
    fn equality_binds_a_parameter_to_a_deterministic_column_only() {
        let mut bindings = ParameterBindings::default();
        compare_for_equality(
            &mut bindings,
            &Operand::Parameter(1),
            &column("ssn", DET1),
            "=",
        )
        .unwrap();
        assert!(matches!(
            &bindings.into_targets(1)[0],
            ParameterTarget::Encrypted {
                encryption: ColumnEncryption { setting_id: 1, .. },
                usage: ParameterUse::Compare,
                ..
            }
        ));
        let mut bindings = ParameterBindings::default();
        assert!(matches!(
            unboxed(compare_for_equality(
                &mut bindings,
                &column("diagnosis", RND2),
                &Operand::Parameter(1),
                "="
            )),
            Err(Refusal::NotAllowed {
                mode: EncryptionMode::Randomized,
                ..
            })
        ));
        assert!(matches!(
            unboxed(compare_for_equality(
                &mut bindings,
                &column("ssn", DET1),
                &column("email", DET3),
                "="
            )),
            Err(Refusal::SettingMismatch { .. })
        ));
        assert!(matches!(
            unboxed(compare_for_equality(
                &mut bindings,
                &column("ssn", DET1),
                &column("view_ssn", None),
                "="
            )),
            Err(Refusal::UnusableColumn { .. })
        ));
    }

    #[test]
    fn only_parameters_null_default_and_same_setting_columns_are_stored() {
        let mut bindings = ParameterBindings::default();
        let target = ciphertext("ssn", DET1);
        for allowed in [
            Operand::Parameter(1),
            Operand::Null,
            Operand::Default,
            column("other", DET1),
        ] {
            store(&mut bindings, &target, &allowed).unwrap();
        }
        for refused in [Operand::Literal, Operand::Computed, column("email", DET3)] {
            assert!(store(&mut bindings, &target, &refused).is_err());
        }
    }

    #[test]
    fn set_operations_mix_ciphertext_only_with_null_and_its_own_setting() {
        combine(
            &[column("ssn", DET1), Operand::Null, column("v", DET1)],
            "UNION",
            true,
        )
        .unwrap();
        combine(&[column("d", RND2), column("d", RND2)], "UNION ALL", false).unwrap();
        assert!(combine(&[column("d", RND2), column("d", RND2)], "UNION", true).is_err());
        assert!(combine(
            &[column("ssn", DET1), Operand::Parameter(1)],
            "UNION ALL",
            false
        )
        .is_err());
        assert!(matches!(
            unboxed(combine(
                &[column("ssn", DET1), column("email", DET3)],
                "UNION ALL",
                false
            )),
            Err(Refusal::SettingMismatch { .. })
        ));
    }
}
