//! Where each `$n` goes, collected over every place it appears.

use std::collections::BTreeMap;

use super::{BoxedRefusal, ParameterTarget, Refusal, UnnestedParameter};

/// The targets found so far, by parameter number.
///
/// A parameter is sent once per execution, so every appearance must agree on
/// how it is encrypted: one setting, scalar or array, or not at all.
#[derive(Debug, Default)]
pub(super) struct ParameterBindings {
    targets: BTreeMap<usize, ParameterTarget>,
    /// Arguments of `unnest(…)`, whose server types are checked.
    unnested: Vec<UnnestedParameter>,
}

impl ParameterBindings {
    /// Records one appearance of `$number`.
    ///
    /// # Errors
    /// [`Refusal::ParameterConflict`] if an earlier appearance needs it
    /// encrypted differently.
    pub(super) fn bind(
        &mut self,
        number: usize,
        target: ParameterTarget,
    ) -> Result<(), BoxedRefusal> {
        match self.targets.get(&number) {
            None => {
                self.targets.insert(number, target);
                Ok(())
            }
            // The first appearance names the column; a later one of the same
            // setting and shape is encrypted identically, but a value both
            // stored and compared must fit the column's typmod unchanged.
            Some(existing) if encrypt_alike(existing, &target) => {
                if let (
                    ParameterTarget::Encrypted {
                        column,
                        encryption,
                        usage,
                    },
                    ParameterTarget::Encrypted { usage: added, .. },
                ) = (existing, &target)
                {
                    let merged = ParameterTarget::Encrypted {
                        column: column.clone(),
                        encryption: encryption.clone(),
                        usage: usage.merged_with(*added),
                    };
                    self.targets.insert(number, merged);
                }
                Ok(())
            }
            Some(existing) => Err(Box::new(Refusal::ParameterConflict {
                parameter: number,
                first: describe(existing),
                second: describe(&target),
            })),
        }
    }

    /// Records a plaintext appearance of `$number`.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub(super) fn bind_plaintext(&mut self, number: usize) -> Result<(), BoxedRefusal> {
        self.bind(number, ParameterTarget::Plaintext)
    }

    /// Records that `$number` is an argument of `unnest(…)`, whose elements
    /// must be of the built-in type `element` (or any type that is not
    /// composite, for `None`).
    pub(super) fn unnest(&mut self, number: usize, element: Option<&'static str>) {
        let parameter = UnnestedParameter { number, element };
        if !self.unnested.contains(&parameter) {
            self.unnested.push(parameter);
        }
    }

    /// The arguments of `unnest(…)` recorded.
    pub(super) fn unnested(&self) -> Vec<UnnestedParameter> {
        self.unnested.clone()
    }

    /// Adds the appearances of another statement of the same text.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub(super) fn merge(&mut self, other: ParameterBindings) -> Result<(), BoxedRefusal> {
        for parameter in other.unnested {
            self.unnest(parameter.number, parameter.element);
        }
        for (number, target) in other.targets {
            self.bind(number, target)?;
        }
        Ok(())
    }

    /// The highest parameter number bound.
    pub(super) fn highest(&self) -> usize {
        self.targets.keys().next_back().copied().unwrap_or(0)
    }

    /// `$1..=$count` in order; numbers never bound are plaintext.
    pub(super) fn into_targets(mut self, count: usize) -> Vec<ParameterTarget> {
        (1..=count)
            .map(|number| {
                self.targets
                    .remove(&number)
                    .unwrap_or(ParameterTarget::Plaintext)
            })
            .collect()
    }
}

/// Whether one value, encrypted once, serves both appearances.
fn encrypt_alike(first: &ParameterTarget, second: &ParameterTarget) -> bool {
    match (first, second) {
        (ParameterTarget::Plaintext, ParameterTarget::Plaintext) => true,
        (
            ParameterTarget::Encrypted {
                encryption: first_encryption,
                usage: first_usage,
                ..
            },
            ParameterTarget::Encrypted {
                encryption: second_encryption,
                usage: second_usage,
                ..
            },
        ) => {
            // Cells are bound to the setting, not to the column, so two
            // columns of one setting take the same ciphertext; but an array
            // (`= ANY($n)`, `unnest($n)`) and a scalar are different values.
            first_encryption.setting_id == second_encryption.setting_id
                && first_usage.is_array() == second_usage.is_array()
        }
        _ => false,
    }
}

fn describe(target: &ParameterTarget) -> String {
    match target {
        ParameterTarget::Plaintext => "a plaintext value".to_owned(),
        ParameterTarget::Encrypted {
            column,
            encryption,
            usage,
        } => {
            let shape = if usage.is_array() {
                "an array"
            } else {
                "a value"
            };
            format!("{shape} for encrypted column {column} ({encryption})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{ColumnEncryption, ParameterUse};
    use crate::cell::EncryptionMode;
    use crate::names::ColumnName;

    fn encrypted(column: &str, setting_id: u32, usage: ParameterUse) -> ParameterTarget {
        ParameterTarget::Encrypted {
            column: ColumnName::new("public", "patients", column),
            encryption: ColumnEncryption {
                setting_id,
                setting_name: format!("s{setting_id}").into(),
                mode: EncryptionMode::Deterministic,
            },
            usage,
        }
    }

    #[test]
    fn same_setting_and_shape_agree_and_keep_the_first_column() {
        let mut bindings = ParameterBindings::default();
        bindings
            .bind(1, encrypted("ssn", 1, ParameterUse::Compare))
            .unwrap();
        bindings
            .bind(1, encrypted("other", 1, ParameterUse::Compare))
            .unwrap();
        assert_eq!(
            bindings.into_targets(2),
            vec![
                encrypted("ssn", 1, ParameterUse::Compare),
                ParameterTarget::Plaintext
            ]
        );
    }

    #[test]
    fn a_parameter_stored_and_compared_is_marked_so_whichever_comes_first() {
        for (first, second) in [
            (ParameterUse::Store, ParameterUse::Compare),
            (ParameterUse::Compare, ParameterUse::Store),
        ] {
            let mut bindings = ParameterBindings::default();
            bindings.bind(1, encrypted("ssn", 1, first)).unwrap();
            bindings.bind(1, encrypted("ssn", 1, second)).unwrap();
            bindings.bind(1, encrypted("ssn", 1, first)).unwrap();
            assert_eq!(
                bindings.into_targets(1),
                vec![encrypted("ssn", 1, ParameterUse::StoreAndCompare)]
            );
        }
    }

    #[test]
    fn different_settings_shapes_or_plaintext_conflict() {
        let mut bindings = ParameterBindings::default();
        bindings
            .bind(1, encrypted("ssn", 1, ParameterUse::Compare))
            .unwrap();
        for other in [
            encrypted("email", 3, ParameterUse::Compare),
            encrypted("ssn", 1, ParameterUse::CompareAny),
            ParameterTarget::Plaintext,
        ] {
            assert!(matches!(
                bindings.bind(1, other).map_err(|refusal| *refusal),
                Err(Refusal::ParameterConflict { parameter: 1, .. })
            ));
        }
    }
}
