//! Key and setting administration: the writes that build the catalog.
//!
//! Every change runs in one transaction that locks the catalog's version
//! row, raises the catalog generation, signs a new manifest for every
//! master key this administrator holds, and announces the new generation
//! on [`CATALOG_CHANNEL`]: clients that listen drop what they analyzed
//! against the older catalog before their next statement.

use std::collections::{BTreeMap, BTreeSet};

use aepg_keystore::{
    ColumnKey, KeyStoreError, KeyStoreRegistry, MasterKeyLocation, MIN_MASTER_KEY_BITS,
};
use postgres_protocol::escape::escape_identifier;
use tokio_postgres::GenericClient;

use super::error::{CatalogError, CatalogObject};
use super::install::{require_installed, CATALOG_CHANNEL};
use super::load::load_verified;
use super::model::{Catalog, EncryptionSetting, SkipReason};
use super::pin::Pins;
use crate::cell::{CellSetting, EncryptionMode, NamedType, PaddingPolicy, PlaintextType};
use crate::names::ColumnName;
use crate::record::{
    CatalogRecord, ColumnAssignment, ColumnManifest, EncryptionSettingRecord, SignedRecord,
    WrappedColumnKey,
};
use crate::support::{generation_from_sql, generation_to_sql, id_from_sql, id_to_sql};
use crate::Error;

/// A new column encryption setting.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewEncryptionSetting {
    /// Unique name (`"patients_ssn"`).
    pub name: String,
    /// The plaintext type (see [`PlaintextType::parse`]).
    pub plaintext_type: PlaintextType,
    /// Deterministic or randomized.
    pub mode: EncryptionMode,
    /// Padding; `None` takes the type's default (`block16` for variable-length types).
    pub padding: Option<PaddingPolicy>,
    /// The column encryption key.
    pub key_id: u32,
    /// For an enum or `citext`: the type by name; the plaintext type is
    /// then `text` (see [`NamedType`]).
    pub named_type: Option<NamedType>,
}

impl NewEncryptionSetting {
    /// A setting named `name` for values of `plaintext_type` in `mode`,
    /// under column key `key_id`, with the type's default padding.
    pub fn new(
        name: impl Into<String>,
        plaintext_type: PlaintextType,
        mode: EncryptionMode,
        key_id: u32,
    ) -> Self {
        Self {
            name: name.into(),
            plaintext_type,
            mode,
            padding: None,
            key_id,
            named_type: None,
        }
    }

    /// A setting named `name` for values of a type known by name (an enum,
    /// `citext`), whose values are text, in `mode` under column key `key_id`.
    pub fn named(
        name: impl Into<String>,
        named_type: NamedType,
        mode: EncryptionMode,
        key_id: u32,
    ) -> Self {
        Self {
            named_type: Some(named_type),
            ..Self::new(name, TEXT, mode, key_id)
        }
    }

    /// Pads values with `padding` instead of the type's default.
    pub fn with_padding(mut self, padding: PaddingPolicy) -> Self {
        self.padding = Some(padding);
        self
    }
}

/// `text`: the plaintext type of a setting of a named type.
const TEXT: PlaintextType = PlaintextType {
    oid: 25,
    typmod: -1,
};

/// Writes the catalog: master keys, column keys, settings, assignments, and
/// the signed manifests of every encrypted column.
///
/// Every record it writes is signed by a column master key through the key
/// store registry, so it needs the master keys' private halves.
///
/// ```no_run
/// # async fn demo(mut plain: tokio_postgres::Client, registry: aepg::keystore::KeyStoreRegistry) -> Result<(), aepg::Error> {
/// use aepg::catalog::{install, CatalogAdmin, NewEncryptionSetting};
/// use aepg::cell::{EncryptionMode, PlaintextType};
/// use aepg::keystore::MasterKeyLocation;
/// use aepg::ColumnName;
///
/// install(&mut plain).await?;
/// let admin = CatalogAdmin::new(registry);
/// let cmk = MasterKeyLocation::new("local", "cmk1.pem");
/// admin.register_master_key(&mut plain, "cmk1", &cmk).await?;
/// let key_id = admin.create_column_key(&mut plain, "cmk1", &cmk).await?;
/// let setting = NewEncryptionSetting::new(
///     "ssn",
///     PlaintextType::parse("text")?,
///     EncryptionMode::Deterministic,
///     key_id,
/// );
/// admin.create_setting(&mut plain, &setting).await?;
/// plain.batch_execute("CREATE TABLE patients (id int, ssn aepg.ciphertext)").await?;
/// admin.assign_column(&mut plain, &ColumnName::new("public", "patients", "ssn"), "ssn").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct CatalogAdmin {
    pub(crate) registry: KeyStoreRegistry,
    pins: Pins,
    /// Whether it may register its first master key in a catalog with history.
    joining: bool,
}

impl CatalogAdmin {
    /// An administrator using the master keys of `registry`.
    pub fn new(registry: KeyStoreRegistry) -> Self {
        Self {
            registry,
            pins: Pins::new(),
            joining: false,
        }
    }

    /// Lets this administrator register its first master key in a catalog
    /// that has changed before (generation above 1, where install starts)
    /// without a manifest of any key it holds: a database whose catalog
    /// another application's keys already sign. Without it, such a catalog is refused
    /// ([`CatalogError::NoHeldManifest`]): stripped of this administrator's
    /// master keys and manifests, a catalog looks just like that, and
    /// registering would sign a manifest without the columns they listed.
    pub fn joining_catalog(mut self) -> Self {
        self.joining = true;
        self
    }

    /// Checks `pins` (the applications' pin file) before every change, as
    /// a client does before it trusts the catalog: a catalog rolled back to
    /// older manifests, or replaced, is refused rather than re-signed.
    pub fn with_pins(mut self, pins: Pins) -> Self {
        self.pins = pins;
        self
    }

    /// Registers a column master key under `name`, after checking that the
    /// key store has it and that it is large enough, and signs its first
    /// manifest. Re-registering the same location under the same name
    /// changes nothing.
    ///
    /// # Errors
    /// The key store's refusal; [`CatalogError::AlreadyExists`] if `name`
    /// names another location.
    pub async fn register_master_key(
        &self,
        client: &mut impl GenericClient,
        name: &str,
        location: &MasterKeyLocation,
    ) -> Result<(), Error> {
        let info = self.registry.describe(location).await?;
        if info.bits < MIN_MASTER_KEY_BITS {
            return Err(KeyStoreError::KeyTooSmall {
                key_path: location.key_path.clone(),
                bits: info.bits,
                minimum: MIN_MASTER_KEY_BITS,
            }
            .into());
        }
        let change = Change::begin(client, self, Manifests::Required).await?;
        let holds_a_manifest = change
            .catalog
            .manifests()
            .iter()
            .any(|manifest| self.registry.check(&manifest.master_key).is_ok());
        if change.catalog.generation() > 1 && !holds_a_manifest && !self.joining {
            return Err(CatalogError::NoHeldManifest {
                generation: change.catalog.generation(),
            }
            .into());
        }
        match change.catalog.master_keys.get(name) {
            Some(existing) if existing == location => return Ok(()),
            Some(_) => {
                return Err(CatalogError::AlreadyExists {
                    object: CatalogObject::MasterKey,
                    name: name.to_owned(),
                }
                .into())
            }
            None => {}
        }
        change
            .transaction
            .execute(
                "INSERT INTO aepg.master_keys (name, provider, key_path) VALUES ($1, $2, $3)",
                &[&name, &location.provider, &location.key_path],
            )
            .await?;
        let mut signers = change.signers();
        signers.insert(name.to_owned(), location.clone());
        change.commit(&self.registry, signers).await?;
        Ok(())
    }

    /// Creates a column encryption key: 32 random bytes, wrapped and signed
    /// by the master key `master_key_name`, which must be registered at
    /// `location`. Returns its id.
    ///
    /// The location is the caller's, not the catalog's: the catalog is not
    /// trusted, and a repointed `aepg.master_keys` row must not make the
    /// administrator wrap a new key under a master key someone else chose.
    ///
    /// # Errors
    /// An unknown master key or one registered elsewhere, the key store's
    /// refusal, database errors.
    pub async fn create_column_key(
        &self,
        client: &mut impl GenericClient,
        master_key_name: &str,
        location: &MasterKeyLocation,
    ) -> Result<u32, Error> {
        let change = Change::begin(client, self, Manifests::Required).await?;
        match change.catalog.master_keys.get(master_key_name) {
            None => {
                return Err(CatalogError::NotFound {
                    object: CatalogObject::MasterKey,
                    name: master_key_name.to_owned(),
                }
                .into())
            }
            Some(registered) if registered != location => {
                return Err(CatalogError::MasterKeyElsewhere {
                    name: master_key_name.to_owned(),
                    registered: registered.clone(),
                    expected: location.clone(),
                }
                .into())
            }
            Some(_) => {}
        }
        let key_id = change
            .new_column_key(&self.registry, &[(master_key_name, location)])
            .await?;
        let signers = change.signers();
        change.commit(&self.registry, signers).await?;
        Ok(key_id)
    }

    /// Creates a column encryption setting, signed by the master key of its
    /// column key. Returns its id.
    ///
    /// # Errors
    /// An unsupported type, an unknown or unverifiable column key, a name in
    /// use, the key store's refusal, database errors.
    pub async fn create_setting(
        &self,
        client: &mut impl GenericClient,
        new: &NewEncryptionSetting,
    ) -> Result<u32, Error> {
        let named_ok = new
            .named_type
            .as_ref()
            .is_none_or(|named| named.check().is_ok() && new.plaintext_type == TEXT);
        if !new.plaintext_type.is_supported() || !named_ok {
            return Err(crate::cell::UnsupportedType {
                name: new.named_type.as_ref().map_or_else(
                    || new.plaintext_type.display_name(),
                    |named| {
                        format!(
                            "{} (as {})",
                            named.name(),
                            new.plaintext_type.display_name()
                        )
                    },
                ),
            }
            .into());
        }
        let change = Change::begin(client, self, Manifests::Required).await?;
        if change.catalog.setting_by_name(&new.name).is_some() {
            return Err(CatalogError::AlreadyExists {
                object: CatalogObject::EncryptionSetting,
                name: new.name.clone(),
            }
            .into());
        }
        let referenced = change
            .catalog
            .settings()
            .keys()
            .chain(change.catalog.assignments.values())
            .chain(
                change
                    .catalog
                    .manifests()
                    .iter()
                    .flat_map(|manifest| manifest.columns.values()),
            )
            .copied();
        let (sql_id, setting_id) = fresh_id(
            &change.transaction,
            IdKind::Setting,
            referenced.max().unwrap_or(0),
        )
        .await?;
        let record = EncryptionSettingRecord {
            name: new.name.clone(),
            setting: CellSetting {
                setting_id,
                mode: new.mode,
                plaintext_type: new.plaintext_type,
                padding: new
                    .padding
                    .unwrap_or_else(|| new.plaintext_type.default_padding()),
            },
            key_id: new.key_id,
            named_type: new.named_type.clone(),
        };
        let signed = sign_under_key(
            &change.transaction,
            &self.registry,
            &change.catalog,
            new.key_id,
            &record,
        )
        .await?;
        change
            .transaction
            .execute(
                "INSERT INTO aepg.encryption_settings (id, name, key_id, record, signature, cosignature)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &sql_id,
                    &new.name,
                    &id_to_sql(new.key_id, "column key id")?,
                    &signed.canonical,
                    &signed.signature(),
                    &signed.cosignature(),
                ],
            )
            .await?;
        let signers = change.signers();
        change.commit(&self.registry, signers).await?;
        Ok(setting_id)
    }

    /// Assigns a column of a table, or of a view, to a setting, and adds it
    /// to the manifests. The column must be of type `aepg.ciphertext`; a
    /// table column must hold no values yet (encrypting existing data is a
    /// migration, not an assignment). A view column is decrypted only under
    /// the setting assigned here: without an assignment, its cells are
    /// refused. Re-assigning a column to the setting it has changes nothing.
    ///
    /// # Errors
    /// A missing, non-ciphertext or non-empty column; an unknown setting; a
    /// column assigned to another setting; the key store's refusal.
    pub async fn assign_column(
        &self,
        client: &mut impl GenericClient,
        column: &ColumnName,
        setting_name: &str,
    ) -> Result<(), Error> {
        let change = Change::begin(client, self, Manifests::Required).await?;
        let setting = change
            .catalog
            .setting_by_name(setting_name)
            .ok_or_else(|| CatalogError::NotFound {
                object: CatalogObject::EncryptionSetting,
                name: setting_name.to_owned(),
            })?
            .clone();
        let setting_id = setting.cell.setting_id;
        if let Some(existing) = change.catalog.assignments.get(column) {
            return if *existing == setting_id {
                Ok(())
            } else {
                Err(CatalogError::AlreadyExists {
                    object: CatalogObject::ColumnAssignment,
                    name: column.to_string(),
                }
                .into())
            };
        }
        check_column_assignable(&change.transaction, column).await?;
        let mut change = change;
        change.assign(&self.registry, column, &setting).await?;
        let signers = change.signers();
        change.commit(&self.registry, signers).await?;
        Ok(())
    }

    /// Drops column key `key_id` and its wrapped values, if no setting or
    /// key rotation uses it and no cell of any `aepg.ciphertext` column of
    /// a table names it (each such column is scanned: a cell kept from
    /// before a rotation, or written there by hand, must not lose its key).
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] for an unknown key, [`CatalogError::InUse`]
    /// naming the settings that use it, the key store's refusal (the
    /// manifests are signed again), database errors.
    pub async fn drop_column_key(
        &self,
        client: &mut impl GenericClient,
        key_id: u32,
    ) -> Result<(), Error> {
        let change = Change::begin(client, self, Manifests::Required).await?;
        let known = change.catalog.column_keys.contains_key(&key_id);
        let users: Vec<String> = change
            .catalog
            .settings()
            .values()
            .filter(|setting| setting.key_id == key_id)
            .map(|setting| format!("setting {:?}", setting.name))
            .collect();
        // A setting row naming the key, verified or not, keeps it too: its
        // foreign key would refuse the delete anyway.
        let sql_id = id_to_sql(key_id, "column key id")?;
        let rows: i64 = change
            .transaction
            .query_one(
                "SELECT count(*) FROM aepg.encryption_settings WHERE key_id = $1",
                &[&sql_id],
            )
            .await?
            .get(0);
        if !users.is_empty() || rows > 0 {
            return Err(CatalogError::InUse {
                object: CatalogObject::ColumnKey,
                name: key_id.to_string(),
                users: if users.is_empty() {
                    format!("{rows} setting row(s) that do not verify")
                } else {
                    users.join(", ")
                },
            }
            .into());
        }
        let rotating: bool = change
            .transaction
            .query_one(
                "SELECT EXISTS (SELECT FROM aepg.key_rotations
                                WHERE from_key_id = $1 OR to_key_id = $1)",
                &[&sql_id],
            )
            .await?
            .try_get(0)?;
        if rotating {
            return Err(CatalogError::InUse {
                object: CatalogObject::ColumnKey,
                name: key_id.to_string(),
                users: "a column key rotation under way (`aepg rotate cek status`)".to_owned(),
            }
            .into());
        }
        if let Some(column) = column_with_cells_of(&change.transaction, key_id).await? {
            return Err(CatalogError::InUse {
                object: CatalogObject::ColumnKey,
                name: key_id.to_string(),
                users: format!("cells of column {column}"),
            }
            .into());
        }
        let deleted = change
            .transaction
            .execute(
                "WITH values_gone AS (DELETE FROM aepg.column_key_values WHERE key_id = $1)
                 DELETE FROM aepg.column_keys WHERE id = $1",
                &[&sql_id],
            )
            .await?;
        if deleted == 0 && !known {
            return Err(CatalogError::NotFound {
                object: CatalogObject::ColumnKey,
                name: key_id.to_string(),
            }
            .into());
        }
        let signers = change.signers();
        change.commit(&self.registry, signers).await?;
        Ok(())
    }

    /// Signs a new manifest, at a new generation, for every registered
    /// master key this administrator holds: after an upgrade from a catalog
    /// without manifests, or to refresh them. Returns the new generation.
    ///
    /// Unlike every other change, this one also signs for a master key that
    /// has no verified manifest yet. The new manifest then lists the columns
    /// whose assignment records verify, and trusts that list as complete:
    /// run it right after the upgrade, not on a catalog that had manifests
    /// and lost them (other changes refuse such a catalog, with
    /// [`CatalogError::ManifestMissing`]).
    ///
    /// # Errors
    /// The key store's refusal, database errors.
    pub async fn sign_manifests(&self, client: &mut impl GenericClient) -> Result<u64, Error> {
        let change = Change::begin(client, self, Manifests::MaySignFirst).await?;
        let signers = change.signers();
        change.commit(&self.registry, signers).await
    }

    /// Loads and verifies the catalog: everything there is to list. Unlike
    /// a client, an administrator also loads a catalog without manifests.
    ///
    /// # Errors
    /// As [`load_catalog`](super::load_catalog).
    pub async fn load(&self, client: &impl GenericClient) -> Result<Catalog, Error> {
        load_verified(client, &self.registry, false).await
    }
}

/// One administrative change in progress: a transaction holding the lock on
/// the catalog's version row, and the catalog as it was when it began.
pub(crate) struct Change<'t> {
    pub(crate) transaction: tokio_postgres::Transaction<'t>,
    pub(crate) catalog: Catalog,
    /// Columns assigned by this change, which the loaded catalog lacks.
    pub(crate) added: BTreeMap<ColumnName, u32>,
    /// Columns whose assignment this change deletes (a column decrypted in
    /// place): the new manifests leave them out.
    pub(crate) removed: BTreeSet<ColumnName>,
}

/// Manifests signed for the generation a change will publish
/// ([`Change::sign_manifests`]).
pub(crate) struct SignedManifests {
    generation: u64,
    manifests: Vec<(String, SignedRecord<ColumnManifest>)>,
}

/// Whether a change may sign the first manifest of a master key it holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Manifests {
    /// Every registered master key the administrator holds has a verified
    /// manifest, or the catalog was stripped.
    Required,
    /// [`CatalogAdmin::sign_manifests`], the bootstrap after an upgrade.
    MaySignFirst,
}

impl<'t> Change<'t> {
    pub(crate) async fn begin(
        client: &'t mut impl GenericClient,
        admin: &CatalogAdmin,
        manifests: Manifests,
    ) -> Result<Self, Error> {
        let registry = &admin.registry;
        let transaction = client.transaction().await?;
        require_installed(&transaction).await?;
        // Serializes administrators: the second waits for the first to
        // commit, then loads what it wrote.
        transaction
            .execute(
                "SELECT generation FROM aepg.catalog_version FOR UPDATE",
                &[],
            )
            .await?;
        let catalog = load_verified(&transaction, registry, false).await?;
        admin.pins.check(&catalog)?;
        if manifests == Manifests::Required {
            require_held_manifests(&catalog, registry)?;
        }
        Ok(Self {
            transaction,
            catalog,
            added: BTreeMap::new(),
            removed: BTreeSet::new(),
        })
    }

    /// Signs and inserts the assignment of `column` to `setting`, which the
    /// new manifests then list.
    pub(crate) async fn assign(
        &mut self,
        registry: &KeyStoreRegistry,
        column: &ColumnName,
        setting: &EncryptionSetting,
    ) -> Result<(), Error> {
        let setting_id = setting.cell.setting_id;
        let record = ColumnAssignment {
            schema: column.schema.clone(),
            table: column.table.clone(),
            column: column.column.clone(),
            setting_id,
        };
        let signed = sign_under_key(
            &self.transaction,
            registry,
            &self.catalog,
            setting.key_id,
            &record,
        )
        .await?;
        self.transaction
            .execute(
                "INSERT INTO aepg.column_assignments
                     (schema_name, table_name, column_name, setting_id, record, signature, cosignature)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &column.schema,
                    &column.table,
                    &column.column,
                    &id_to_sql(setting_id, "setting id")?,
                    &signed.canonical,
                    &signed.signature(),
                    &signed.cosignature(),
                ],
            )
            .await?;
        self.added.insert(column.clone(), setting_id);
        Ok(())
    }

    /// Generates a column key and inserts it wrapped under each of
    /// `master_keys` (name and location, the caller's). Returns its id.
    pub(crate) async fn new_column_key(
        &self,
        registry: &KeyStoreRegistry,
        master_keys: &[(&str, &MasterKeyLocation)],
    ) -> Result<u32, Error> {
        let referenced = self.catalog.column_keys.keys().copied().chain(
            self.catalog
                .settings()
                .values()
                .map(|setting| setting.key_id),
        );
        let (sql_id, key_id) = fresh_id(
            &self.transaction,
            IdKind::ColumnKey,
            referenced.max().unwrap_or(0),
        )
        .await?;
        let column_key = ColumnKey::generate()?;
        self.transaction
            .execute("INSERT INTO aepg.column_keys (id) VALUES ($1)", &[&sql_id])
            .await?;
        for (name, location) in master_keys {
            let sealed = SignedRecord::<WrappedColumnKey>::seal(
                registry,
                &self.catalog.id(),
                name,
                location,
                key_id,
                &column_key,
            )
            .await?;
            self.transaction
                .execute(
                    "INSERT INTO aepg.column_key_values (key_id, master_key_name, record, signature)
                     VALUES ($1, $2, $3, $4)",
                    &[
                        &sql_id,
                        name,
                        &sealed.canonical_bytes(),
                        &sealed.signature(),
                    ],
                )
                .await?;
        }
        Ok(key_id)
    }

    /// Deletes the assignment of `column`, which the new manifests then
    /// leave out.
    pub(crate) async fn unassign(&mut self, column: &ColumnName) -> Result<(), Error> {
        self.transaction
            .execute(
                "DELETE FROM aepg.column_assignments
                 WHERE schema_name = $1 AND table_name = $2 AND column_name = $3",
                &[&column.schema, &column.table, &column.column],
            )
            .await?;
        self.removed.insert(column.clone());
        Ok(())
    }

    /// The registered master keys, by name: those this administrator holds
    /// sign the new manifests.
    pub(crate) fn signers(&self) -> BTreeMap<String, MasterKeyLocation> {
        self.catalog.master_keys.clone()
    }

    /// Raises the generation, signs a manifest under each of `signers` that
    /// this administrator holds, announces the generation and commits.
    pub(crate) async fn commit(
        self,
        registry: &KeyStoreRegistry,
        signers: BTreeMap<String, MasterKeyLocation>,
    ) -> Result<u64, Error> {
        let manifests = self.sign_manifests(registry, signers).await?;
        self.commit_signed(manifests).await
    }

    /// Signs, under each of `signers` that this administrator holds, the
    /// manifest of the generation this change will publish (the next one:
    /// the version row is locked), without writing it. A change that must
    /// hold other locks only briefly signs first, so that no key store's
    /// latency is spent under them.
    pub(crate) async fn sign_manifests(
        &self,
        registry: &KeyStoreRegistry,
        signers: BTreeMap<String, MasterKeyLocation>,
    ) -> Result<SignedManifests, Error> {
        let current = generation_from_sql(
            self.transaction
                .query_one("SELECT generation FROM aepg.catalog_version", &[])
                .await?
                .try_get(0)?,
        )?;
        let generation = current.checked_add(1).ok_or(CatalogError::Unsettled)?;
        let columns = self.manifest_columns();
        let mut manifests = Vec::new();
        for (name, location) in signers {
            let manifest = ColumnManifest {
                master_key_name: name.clone(),
                master_key: location.clone(),
                generation,
                columns: columns.clone(),
            };
            let signed =
                match SignedRecord::sign(manifest, &self.catalog.id(), registry, &location).await {
                    Ok(signed) => signed,
                    // A master key this administrator does not hold keeps
                    // its older manifest: older, never rolled back.
                    Err(crate::record::RecordError::KeyStore(
                        KeyStoreError::UnknownProvider { .. }
                        | KeyStoreError::UntrustedKeyPath { .. }
                        | KeyStoreError::KeyNotFound { .. }
                        | KeyStoreError::ProviderUnavailable { .. },
                    )) => continue,
                    Err(other) => return Err(other.into()),
                };
            manifests.push((name, signed));
        }
        Ok(SignedManifests {
            generation,
            manifests,
        })
    }

    /// Raises the generation to the one `manifests` were signed for,
    /// writes them, announces the generation and commits.
    pub(crate) async fn commit_signed(self, manifests: SignedManifests) -> Result<u64, Error> {
        let generation = generation_from_sql(
            self.transaction
                .query_one(
                    "UPDATE aepg.catalog_version SET generation = generation + 1 RETURNING generation",
                    &[],
                )
                .await?
                .try_get(0)?,
        )?;
        if generation != manifests.generation {
            // The version row is locked by this change: only a server that
            // ignores locks gets here.
            return Err(CatalogError::Unsettled.into());
        }
        for (name, signed) in manifests.manifests {
            self.transaction
                .execute(
                    "INSERT INTO aepg.manifests (master_key_name, generation, record, signature)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (master_key_name) DO UPDATE
                     SET generation = EXCLUDED.generation, record = EXCLUDED.record,
                         signature = EXCLUDED.signature, signed_at = now()",
                    &[
                        &name,
                        &generation_to_sql(generation)?,
                        &signed.canonical_bytes(),
                        &signed.signature(),
                    ],
                )
                .await?;
        }
        self.transaction
            .execute(
                "SELECT pg_catalog.pg_notify($1, $2)",
                &[&CATALOG_CHANNEL, &generation.to_string()],
            )
            .await?;
        self.transaction.commit().await?;
        Ok(generation)
    }

    /// Every encrypted column: listed by a verified manifest (a column never
    /// leaves the manifests by accident, even when its records were
    /// damaged), assigned by a verified record, or assigned now.
    fn manifest_columns(&self) -> BTreeMap<ColumnName, u32> {
        let mut columns = BTreeMap::new();
        for manifest in self.catalog.manifests() {
            columns.extend(manifest.columns.clone());
        }
        columns.extend(self.catalog.assignments.clone());
        columns.extend(self.added.clone());
        columns.retain(|column, _| !self.removed.contains(column));
        columns
    }
}

/// Every registered master key `registry` holds must have a verified
/// manifest: a manifest removed (or altered) by the server would otherwise
/// be replaced by one listing only the columns whose records survived.
fn require_held_manifests(catalog: &Catalog, registry: &KeyStoreRegistry) -> Result<(), Error> {
    for (name, location) in &catalog.master_keys {
        let held = registry.check(location).is_ok();
        let verified = catalog
            .manifests()
            .iter()
            .any(|manifest| manifest.master_key_name == *name && manifest.master_key == *location);
        if held && !verified {
            let what = format!("manifest of master key {name:?}");
            if let Some(skipped) = catalog
                .skipped
                .iter()
                .find(|skipped| skipped.what == what && skipped.kind == SkipReason::Unverifiable)
            {
                return Err(CatalogError::ManifestUnverifiable {
                    master_key: name.clone(),
                    reason: skipped.reason.clone(),
                }
                .into());
            }
            return Err(CatalogError::ManifestMissing {
                master_key: name.clone(),
            }
            .into());
        }
    }
    Ok(())
}

/// A table column of type `aepg.ciphertext` with a cell under column key
/// `key_id`, if there is one: every such column is scanned.
async fn column_with_cells_of(
    client: &impl GenericClient,
    key_id: u32,
) -> Result<Option<String>, Error> {
    let columns = client
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text
             FROM pg_catalog.pg_attribute a
             JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
             JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
             WHERE a.atttypid OPERATOR(pg_catalog.=) 'aepg.ciphertext'::pg_catalog.regtype
               AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
               AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,m}'::pg_catalog.\"char\"[])
             ORDER BY 1, 2, 3",
            &[],
        )
        .await?;
    let key = key_id.to_be_bytes().to_vec();
    for row in columns {
        let (schema, table, column): (String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        // Identifiers are quoted here, not by the (untrusted) server.
        let uses: bool = client
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT FROM {}.{} WHERE pg_catalog.substr({}::pg_catalog.bytea, 3, 4)
                                    OPERATOR(pg_catalog.=) $1)",
                    escape_identifier(&schema),
                    escape_identifier(&table),
                    escape_identifier(&column),
                ),
                &[&key],
            )
            .await?
            .try_get(0)?;
        if uses {
            return Ok(Some(ColumnName::new(schema, table, column).to_string()));
        }
    }
    Ok(None)
}

/// The kinds of id an administrator draws from a sequence.
#[derive(Clone, Copy)]
enum IdKind {
    ColumnKey,
    Setting,
}

impl IdKind {
    /// The sequence, the table of rows with such ids, and the name for messages.
    fn sql(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::ColumnKey => ("aepg.column_key_ids", "aepg.column_keys", "column key id"),
            Self::Setting => (
                "aepg.encryption_setting_ids",
                "aepg.encryption_settings",
                "setting id",
            ),
        }
    }
}

/// A fresh id from the sequence of `kind`, checked to be above `referenced`
/// (the highest such id any verified record names) and unused by any row:
/// a sequence reset by the server, or a row it deleted, must not make a new
/// key or setting take the id of an existing one, which signed records and
/// cells would then name.
async fn fresh_id(
    transaction: &tokio_postgres::Transaction<'_>,
    kind: IdKind,
    referenced: u32,
) -> Result<(i32, u32), Error> {
    let (sequence, table, what) = kind.sql();
    let sql_id: i32 = transaction
        .query_one(
            &format!("SELECT pg_catalog.nextval('{sequence}')::integer"),
            &[],
        )
        .await?
        .try_get(0)?;
    let id = id_from_sql(sql_id, what)?;
    let in_use: bool = transaction
        .query_one(
            &format!("SELECT EXISTS (SELECT FROM {table} WHERE id OPERATOR(pg_catalog.=) $1)"),
            &[&sql_id],
        )
        .await?
        .try_get(0)?;
    if in_use || id <= referenced {
        return Err(CatalogError::IdInUse { what, id }.into());
    }
    Ok((sql_id, id))
}

/// The master keys that sign records about column key `key_id`: those its
/// verified wrapped values are under (two while a master key is rotated),
/// by name.
pub(crate) fn signers_of_key(catalog: &Catalog, key_id: u32) -> Vec<(&str, &MasterKeyLocation)> {
    let mut signers: Vec<(&str, &MasterKeyLocation)> = Vec::new();
    for value in catalog.column_keys.get(&key_id).into_iter().flatten() {
        let record = value.unverified();
        if !signers
            .iter()
            .any(|(name, _)| *name == record.master_key_name)
        {
            signers.push((&record.master_key_name, &record.master_key));
        }
    }
    signers
}

/// The master keys that must sign a record of column key `key_id`, each
/// of which this administrator verified a wrapped value of: refused when a
/// row names another (see [`sign_under_key`]).
///
/// # Errors
/// [`CatalogError::SignersMissing`]; database errors.
pub(crate) async fn require_signers<'c>(
    client: &impl GenericClient,
    catalog: &'c Catalog,
    key_id: u32,
) -> Result<Vec<(&'c str, &'c MasterKeyLocation)>, Error> {
    let signers = signers_of_key(catalog, key_id);
    let mut missing = Vec::new();
    for row in client
        .query(
            "SELECT DISTINCT master_key_name FROM aepg.column_key_values
             WHERE key_id = $1 AND master_key_name IS NOT NULL ORDER BY 1",
            &[&id_to_sql(key_id, "column key id")?],
        )
        .await?
    {
        let name: String = row.try_get(0)?;
        if !signers.iter().any(|(signer, _)| *signer == name) {
            missing.push(name);
        }
    }
    if !missing.is_empty() {
        return Err(CatalogError::SignersMissing { key_id, missing }.into());
    }
    Ok(signers)
}

/// A record's canonical bytes and its signature by each of its master
/// keys: one, or two while a master key is rotated (the second goes in the
/// row's `cosignature`).
pub(crate) struct Signatures {
    /// The canonical bytes every signature covers.
    pub(crate) canonical: Vec<u8>,
    signatures: Vec<Vec<u8>>,
}

impl Signatures {
    /// The first master key's signature (the row's `signature`).
    pub(crate) fn signature(&self) -> Option<&[u8]> {
        self.signatures.first().map(Vec::as_slice)
    }

    /// The second master key's signature (the row's `cosignature`), if any.
    pub(crate) fn cosignature(&self) -> Option<&[u8]> {
        self.signatures.get(1).map(Vec::as_slice)
    }
}

/// Signs `record`, for `catalog`, under each of `signers`.
///
/// # Errors
/// An unencodable record, the key store's refusal.
pub(crate) async fn sign_each<T: CatalogRecord + Clone>(
    registry: &KeyStoreRegistry,
    catalog: &Catalog,
    record: &T,
    signers: &[&MasterKeyLocation],
) -> Result<Signatures, Error> {
    let mut signatures = Vec::with_capacity(signers.len());
    for signer in signers {
        let signed = SignedRecord::sign(record.clone(), &catalog.id(), registry, signer).await?;
        signatures.push(signed.signature().to_vec());
    }
    Ok(Signatures {
        canonical: record.canonical_bytes()?,
        signatures,
    })
}

/// Signs `record` under every master key of column key `key_id`, so that
/// clients holding either key verify it while one is rotated.
///
/// Every master key a row of the column key names must sign: a record
/// signed by only the key this administrator holds would be invisible to
/// clients (and administrators) that hold only the other, and a rotation
/// completed by one of them would drop it.
///
/// # Errors
/// [`CatalogError::SignersMissing`] when a row names a master key whose
/// value this administrator cannot verify; an unknown column key; more
/// master keys than a record has signatures for; the key store's refusal.
pub(crate) async fn sign_under_key<T: CatalogRecord + Clone>(
    transaction: &tokio_postgres::Transaction<'_>,
    registry: &KeyStoreRegistry,
    catalog: &Catalog,
    key_id: u32,
    record: &T,
) -> Result<Signatures, Error> {
    let signers = require_signers(transaction, catalog, key_id).await?;
    match signers.len() {
        0 => Err(CatalogError::NotFound {
            object: CatalogObject::ColumnKey,
            name: key_id.to_string(),
        }
        .into()),
        1 | 2 => {
            let locations: Vec<&MasterKeyLocation> =
                signers.iter().map(|(_, location)| *location).collect();
            sign_each(registry, catalog, record, &locations).await
        }
        _ => Err(CatalogError::TooManyMasterKeys {
            key_id,
            master_keys: signers.iter().map(|(name, _)| (*name).to_owned()).collect(),
        }
        .into()),
    }
}

async fn check_column_assignable(
    client: &impl GenericClient,
    column: &ColumnName,
) -> Result<(), Error> {
    let refuse = |reason: String| CatalogError::ColumnNotAssignable {
        column: column.clone(),
        reason,
    };
    let row = client
        .query_opt(
            // Operators qualified: the session's search path is the server's.
            "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod),
                    a.atttypid OPERATOR(pg_catalog.=) 'aepg.ciphertext'::pg_catalog.regtype,
                    c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog.\"char\"[])
             FROM pg_catalog.pg_attribute a
             JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
             JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
             WHERE n.nspname OPERATOR(pg_catalog.=) $1
               AND c.relname OPERATOR(pg_catalog.=) $2
               AND a.attname OPERATOR(pg_catalog.=) $3
               AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
               AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m}'::pg_catalog.\"char\"[])",
            &[&column.schema, &column.table, &column.column],
        )
        .await?
        .ok_or_else(|| refuse("no such column in a table or view".to_owned()))?;
    let type_name: String = row.try_get(0)?;
    if !row.try_get::<_, bool>(1)? {
        return Err(refuse(format!(
            "its type is {type_name}; an encrypted column must be declared as aepg.ciphertext"
        ))
        .into());
    }
    if !row.try_get::<_, bool>(2)? {
        // A view holds no values of its own.
        return Ok(());
    }
    // Identifiers are quoted here, not by the (untrusted) server.
    let has_values_query = format!(
        "SELECT EXISTS (SELECT 1 FROM {}.{} WHERE {} IS NOT NULL)",
        escape_identifier(&column.schema),
        escape_identifier(&column.table),
        escape_identifier(&column.column)
    );
    if client
        .query_one(&has_values_query, &[])
        .await?
        .try_get::<_, bool>(0)?
    {
        return Err(refuse(
            "it already holds values; encrypt existing data with a column migration".to_owned(),
        )
        .into());
    }
    Ok(())
}
