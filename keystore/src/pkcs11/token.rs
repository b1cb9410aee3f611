//! One token of a loaded PKCS#11 module: its slot, a pool of logged-in
//! sessions, and the blocking calls made on them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256};

use super::key_path::{Pkcs11KeyPath, TokenSelector};

/// A PKCS#11 module loaded and initialized for this process.
pub(crate) struct Module {
    /// The name the application configured it under.
    pub name: String,
    /// Its library.
    library: PathBuf,
    context: Pkcs11,
}

/// The modules this process has loaded, by library path. A module is
/// initialized once per process and never finalized or unloaded: PKCS#11
/// state is per process, and two stores (or a store and a test's token
/// set-up) must not finalize it under each other.
fn loaded() -> &'static Mutex<HashMap<PathBuf, Pkcs11>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

/// Held around every call that lists slots, looks a slot up by its ID (a
/// token's information, opening a session) or initializes a token. SoftHSM2
/// 2.6 keeps its slots in a map with no lock of its own, and its
/// `C_GetSlotList` inserts into that map (a fresh empty slot, whenever every
/// slot holds a token): two threads listing at once both insert the same ID
/// and abort the process (`SlotManager::insertToken: Assertion
/// 'result.second' failed`), and a lookup during an insert reads a map being
/// rebalanced. These calls come only when a token is looked up or a session
/// pool grows, so one lock for the process costs nothing.
pub(crate) fn slot_table() -> MutexGuard<'static, ()> {
    static SLOT_TABLE: Mutex<()> = Mutex::new(());
    SLOT_TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Module {
    /// The module at `path`, loaded and initialized at its first use in
    /// this process, under the name `name`.
    pub fn load(name: &str, path: &Path) -> Result<Self, String> {
        let mut loaded = loaded().lock().unwrap_or_else(PoisonError::into_inner);
        let context = match loaded.get(path) {
            Some(context) => context.clone(),
            None => {
                let context = Pkcs11::new(path).map_err(|error| {
                    format!(
                        "module {name:?} ({}) cannot be loaded: {error}",
                        path.display()
                    )
                })?;
                match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
                    Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
                    Err(error) => {
                        return Err(format!("module {name:?} does not initialize: {error}"))
                    }
                }
                loaded.insert(path.to_owned(), context.clone());
                context
            }
        };
        Ok(Self {
            name: name.to_owned(),
            library: path.to_owned(),
            context,
        })
    }

    /// The module's cryptoki context.
    #[cfg(feature = "test-util")]
    pub fn context(&self) -> &Pkcs11 {
        &self.context
    }

    /// The slot holding the token `selector` picks, with the token's label
    /// and serial number, if one does.
    ///
    /// # Errors
    /// The module's refusal; two tokens matching.
    pub fn find_slot(
        &self,
        selector: &TokenSelector,
    ) -> Result<Option<(Slot, String, String)>, String> {
        let _slot_table = slot_table();
        let slots = self
            .context
            .get_slots_with_token()
            .map_err(|error| format!("module {:?} lists no slots: {error}", self.name))?;
        let mut found = None;
        for slot in slots {
            let Ok(info) = self.context.get_token_info(slot) else {
                continue; // removed while listing
            };
            if info.token_initialized() && selector.matches(info.label(), info.serial_number()) {
                if found.is_some() {
                    return Err(format!(
                        "{} matches two tokens in module {:?}: name it by serial too",
                        selector.describe(),
                        self.name
                    ));
                }
                found = Some((
                    slot,
                    info.label().trim_end().to_owned(),
                    info.serial_number().trim_end().to_owned(),
                ));
            }
        }
        Ok(found)
    }

    /// Opens a read-write session on `slot`.
    pub fn open_session(&self, slot: Slot) -> Result<Session, CkError> {
        let _slot_table = slot_table();
        self.context.open_rw_session(slot)
    }
}

/// What went wrong in a token call, sorted by what the provider does next.
#[derive(Debug)]
pub(super) enum TokenFailure {
    /// The token or its session went away: forget the slot and try once more.
    Gone(CkError),
    /// The session is not logged in (the module logged everyone out).
    NotLoggedIn,
    /// Anything else, passed to the caller.
    Other(CkError),
}

impl From<CkError> for TokenFailure {
    fn from(error: CkError) -> Self {
        match error {
            CkError::Pkcs11(
                RvError::TokenNotPresent
                | RvError::DeviceRemoved
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::SlotIdInvalid
                | RvError::TokenNotRecognized,
                _,
            ) => Self::Gone(error),
            CkError::Pkcs11(RvError::UserNotLoggedIn, _) => Self::NotLoggedIn,
            _ => Self::Other(error),
        }
    }
}

/// Refused PIN digests by (module library, token serial number).
type RefusedPins = HashMap<(PathBuf, String), [u8; 32]>;

/// PINs tokens refused in this process, by module library and token serial
/// number, salted and hashed: kept beyond any one store or token lookup, so
/// that no path spelling, store or token re-lookup offers one again.
fn refused_pins() -> &'static Mutex<RefusedPins> {
    static REFUSED: OnceLock<Mutex<RefusedPins>> = OnceLock::new();
    REFUSED.get_or_init(Default::default)
}

/// A PIN's salted digest: the salt is random per process, so a digest in
/// memory does not give away a short PIN by a table lookup.
fn pin_digest(pin: &str) -> [u8; 32] {
    static SALT: OnceLock<[u8; 32]> = OnceLock::new();
    let salt = SALT.get_or_init(|| {
        let mut salt = [0u8; 32];
        // Without randomness every digest is unsalted, still not the PIN.
        let _ = rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut salt);
        salt
    });
    let mut digest = Sha256::new();
    digest.update(salt);
    digest.update(pin.as_bytes());
    digest.finalize().into()
}

/// A token the provider has found: its slot and its idle sessions.
pub(super) struct Token {
    /// The slot it was found in.
    pub slot: Slot,
    /// How errors name it.
    pub name: String,
    /// Its label, as the module reports it.
    pub label: String,
    /// Its serial number, as the module reports it.
    serial: String,
    idle: Mutex<Vec<Session>>,
}

impl Token {
    /// A token found in `slot`.
    pub fn new(slot: Slot, name: String, label: String, serial: String) -> Self {
        Self {
            slot,
            name,
            label,
            serial,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle session, or a new one.
    pub fn session(&self, module: &Module) -> Result<Session, CkError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(session) => Ok(session),
            None => module.open_session(self.slot),
        }
    }

    /// Whether `session` is logged in as the token's user. Logins are per
    /// token and process, so a new session shares an older one's, and any
    /// logout ends them all; without one, a search for private keys finds
    /// none rather than failing.
    pub fn logged_in(session: &Session) -> Result<bool, CkError> {
        Ok(!matches!(
            session.get_session_info()?.session_state(),
            SessionState::RoPublic | SessionState::RwPublic
        ))
    }

    /// Keeps `session` for the next call, up to `max_idle` sessions.
    pub fn give_back(&self, session: Session, max_idle: usize) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < max_idle {
            idle.push(session);
        }
    }

    /// Logs the token's user in with `pin`, unless the token refused this
    /// very PIN before in this process, or its PIN is locked or down to
    /// its last try (which only its owner should spend).
    pub fn login(&self, module: &Module, session: &Session, pin: &str) -> Result<(), String> {
        let digest = pin_digest(pin);
        let key = (module.library.clone(), self.serial.clone());
        // Held across the login, so that two threads cannot both try a
        // wrong PIN.
        let mut refused = refused_pins()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if refused.get(&key) == Some(&digest) {
            return Err(format!(
                "{} refused this PIN before; it is not offered again (that could lock the \
                 token): set the right PIN",
                self.name
            ));
        }
        let info = {
            let _slot_table = slot_table();
            module.context.get_token_info(self.slot)
        };
        if let Ok(info) = info {
            if info.user_pin_locked() {
                return Err(format!(
                    "{}'s user PIN is locked: its security officer must unlock it",
                    self.name
                ));
            }
            if info.user_pin_final_try() {
                return Err(format!(
                    "{}'s user PIN has one try left: aepg does not spend it; log in once with \
                     the token's own tool to reset the count",
                    self.name
                ));
            }
        }
        match session.login(UserType::User, Some(&AuthPin::from(pin))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                refused.remove(&key);
                Ok(())
            }
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                refused.insert(key, digest);
                Err(format!("{} refused the PIN (CKR_PIN_INCORRECT)", self.name))
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(format!(
                "{}'s user PIN is locked (CKR_PIN_LOCKED): its security officer must unlock it",
                self.name
            )),
            Err(error) => Err(format!(
                "logging in to {} failed: {}",
                self.name,
                short(&error)
            )),
        }
    }
}

/// The private key and, if the token holds one, the public key a key path names.
pub(super) struct KeyObjects {
    /// The private key.
    pub private: ObjectHandle,
    /// The public key object, when the token has one.
    pub public: Option<ObjectHandle>,
}

/// Finds the RSA key pair `path` names; `Ok(None)` when there is no private key.
///
/// # Errors
/// The token's refusal, or more than one private key matching.
pub(super) fn find_key(
    session: &Session,
    path: &Pkcs11KeyPath,
) -> Result<Option<KeyObjects>, FindError> {
    let find = |class: ObjectClass| -> Result<Vec<ObjectHandle>, CkError> {
        let mut template = vec![Attribute::Class(class), Attribute::KeyType(KeyType::RSA)];
        if let Some(label) = &path.label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &path.id {
            template.push(Attribute::Id(id.clone()));
        }
        session.find_objects(&template)
    };
    let private = find(ObjectClass::PRIVATE_KEY)?;
    let private = match private.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        more => return Err(FindError::Ambiguous(more.len())),
    };
    let public = match find(ObjectClass::PUBLIC_KEY)?.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    Ok(Some(KeyObjects { private, public }))
}

/// Why [`find_key`] failed.
pub(super) enum FindError {
    /// The token call failed.
    Token(CkError),
    /// This many private keys match the path.
    Ambiguous(usize),
}

impl From<CkError> for FindError {
    fn from(error: CkError) -> Self {
        Self::Token(error)
    }
}

/// The RSA modulus and public exponent of `object`.
pub(super) fn public_numbers(
    session: &Session,
    object: ObjectHandle,
) -> Result<(Vec<u8>, Vec<u8>), CkError> {
    let attributes = session.get_attributes(
        object,
        &[AttributeType::Modulus, AttributeType::PublicExponent],
    )?;
    let (mut modulus, mut exponent) = (None, None);
    for attribute in attributes {
        match attribute {
            Attribute::Modulus(value) => modulus = Some(value),
            Attribute::PublicExponent(value) => exponent = Some(value),
            _ => {}
        }
    }
    match (modulus, exponent) {
        (Some(modulus), Some(exponent)) => Ok((modulus, exponent)),
        _ => Err(CkError::InvalidValue),
    }
}

/// A token error in a few words: the return value's name, not cryptoki's
/// paragraph-long description.
pub(super) fn short(error: &CkError) -> String {
    match error {
        CkError::Pkcs11(rv, function) => format!("{function:?} returned {rv:?}"),
        other => other.to_string(),
    }
}
