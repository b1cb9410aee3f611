//! SoftHSM2 for tests (feature `test-util`): a token directory of the test
//! process's own and fresh tokens in it, initialized through PKCS#11.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

use super::token::Module;
use super::Pkcs11Config;

/// Where Debian, Ubuntu, Fedora and a source build put SoftHSM2's module.
const MODULE_PATHS: [&str; 4] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The environment variable that names SoftHSM2's module when it is
/// somewhere else.
pub const MODULE_VARIABLE: &str = "AEPG_TEST_SOFTHSM2_MODULE";

/// The module name test key paths use.
pub const MODULE_NAME: &str = "softhsm2";

/// SoftHSM2 with a token directory of this process's own.
#[derive(Debug)]
pub struct SoftHsm {
    module: PathBuf,
    /// The token directory, removed with the process's temp files.
    tokens: PathBuf,
}

/// A token initialized for one test.
#[derive(Debug, Clone)]
pub struct SoftHsmToken {
    /// Its label.
    pub label: String,
    /// Its user PIN.
    pub pin: String,
    /// Its security officer's PIN.
    pub so_pin: String,
}

impl SoftHsmToken {
    /// The key path of the key labelled `object` in this token.
    pub fn key_path(&self, object: &str) -> String {
        format!(
            "pkcs11:module-name={MODULE_NAME};token={};object={object}",
            self.label
        )
    }
}

impl SoftHsm {
    /// The process's SoftHSM2, set up at the first call. When
    /// `SOFTHSM2_CONF` is set (CI sets it to a fresh directory), tokens go
    /// where it says; otherwise into a fresh token directory, named in
    /// `SOFTHSM2_CONF` then.
    ///
    /// Without `SOFTHSM2_CONF`, call it first thing in a test, before other
    /// threads of the test may read the environment: it sets the variable.
    ///
    /// # Panics
    /// When SoftHSM2 is not installed (`apt-get install softhsm2`), or the
    /// temp directory cannot be written.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<SoftHsm> = OnceLock::new();
        SHARED.get_or_init(|| {
            let module = std::env::var_os(MODULE_VARIABLE)
                .map(PathBuf::from)
                .or_else(|| {
                    MODULE_PATHS
                        .iter()
                        .map(PathBuf::from)
                        .find(|path| path.exists())
                })
                .unwrap_or_else(|| {
                    panic!(
                        "SoftHSM2 is not installed (apt-get install softhsm2, which \
                         scripts/deps.sh does), or set {MODULE_VARIABLE} to its module"
                    )
                });
            if let Some(conf) = std::env::var_os("SOFTHSM2_CONF") {
                let text = std::fs::read_to_string(&conf).unwrap_or_else(|error| {
                    panic!(
                        "reading SOFTHSM2_CONF {}: {error}",
                        PathBuf::from(&conf).display()
                    )
                });
                let tokens = text
                    .lines()
                    .find_map(|line| line.trim().strip_prefix("directories.tokendir"))
                    .and_then(|rest| rest.trim().strip_prefix('='))
                    .map(|dir| PathBuf::from(dir.trim()))
                    .unwrap_or_default();
                return Self { module, tokens };
            }
            let root = std::env::temp_dir().join(format!("aepg-softhsm-{}", std::process::id()));
            let tokens = root.join("tokens");
            std::fs::create_dir_all(&tokens)
                .unwrap_or_else(|error| panic!("creating {}: {error}", tokens.display()));
            let conf = root.join("softhsm2.conf");
            std::fs::write(
                &conf,
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
                     slots.removable = false\n",
                    tokens.display()
                ),
            )
            .unwrap_or_else(|error| panic!("writing {}: {error}", conf.display()));
            // SAFETY of the set-up: this runs once, before the module is
            // loaded (SoftHSM2 reads the variable in C_Initialize).
            std::env::set_var("SOFTHSM2_CONF", &conf);
            Self { module, tokens }
        })
    }

    /// The module's library.
    pub fn module_path(&self) -> &Path {
        &self.module
    }

    /// The token directory.
    pub fn token_directory(&self) -> &Path {
        &self.tokens
    }

    /// A store configuration with this module as [`MODULE_NAME`].
    pub fn config(&self) -> Pkcs11Config {
        Pkcs11Config::new().module(MODULE_NAME, &self.module)
    }

    /// Deletes `token` as `softhsm2-util --delete-token` does: what a token
    /// pulled out of its reader, or wiped by its administrator, looks like.
    ///
    /// # Panics
    /// When `softhsm2-util` fails.
    pub fn remove_token(&self, token: &SoftHsmToken) {
        let status = std::process::Command::new("softhsm2-util")
            .args(["--delete-token", "--token", &token.label])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|error| panic!("running softhsm2-util: {error}"));
        assert!(
            status.success(),
            "softhsm2-util --delete-token {}: {status}",
            token.label
        );
    }

    /// Replaces the public key object of `key_path` in `token` by one with
    /// the numbers `modulus` and `exponent` (big-endian): what someone with
    /// write access to the token's public objects could do.
    ///
    /// # Panics
    /// When SoftHSM2 refuses.
    pub fn replace_public_key(
        &self,
        token: &SoftHsmToken,
        key_path: &str,
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    ) {
        use cryptoki::object::{Attribute, KeyType, ObjectClass};
        let path = super::key_path::Pkcs11KeyPath::parse(key_path)
            .unwrap_or_else(|reason| panic!("{key_path}: {reason}"));
        let session = self.user_session(token);
        let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
        if let Some(label) = &path.label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        for object in session
            .find_objects(&template)
            .unwrap_or_else(|error| panic!("finding {key_path}: {error}"))
        {
            session
                .destroy_object(object)
                .unwrap_or_else(|error| panic!("destroying {key_path}: {error}"));
        }
        template.extend([
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Encrypt(true),
            Attribute::Verify(true),
            Attribute::Modulus(modulus),
            Attribute::PublicExponent(exponent),
        ]);
        session
            .create_object(&template)
            .unwrap_or_else(|error| panic!("creating a public key at {key_path}: {error}"));
    }

    /// A session on `token` logged in as its user (the login may be the
    /// process's already: never logged out here, which would end the
    /// stores' logins too).
    fn user_session(&self, token: &SoftHsmToken) -> cryptoki::session::Session {
        let module =
            Module::load(MODULE_NAME, &self.module).unwrap_or_else(|error| panic!("{error}"));
        let selector = super::key_path::TokenSelector {
            label: Some(token.label.clone()),
            serial: None,
        };
        let (slot, _, _) = module
            .find_slot(&selector)
            .unwrap_or_else(|error| panic!("{error}"))
            .unwrap_or_else(|| panic!("token {} is not present", token.label));
        let session = module
            .open_session(slot)
            .unwrap_or_else(|error| panic!("opening a session on {}: {error}", token.label));
        match session.login(UserType::User, Some(&AuthPin::from(token.pin.as_str()))) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(error) => panic!("logging in to {}: {error}", token.label),
        }
        session
    }

    /// Destroys the key pair labelled by `key_path`'s `object` in `token`,
    /// as an HSM administrator revoking it would; returns whether there was one.
    ///
    /// # Panics
    /// When SoftHSM2 refuses.
    pub fn destroy_key(&self, token: &SoftHsmToken, key_path: &str) -> bool {
        let path = super::key_path::Pkcs11KeyPath::parse(key_path)
            .unwrap_or_else(|reason| panic!("{key_path}: {reason}"));
        let session = self.user_session(token);
        let mut template = Vec::new();
        if let Some(label) = &path.label {
            template.push(cryptoki::object::Attribute::Label(
                label.as_bytes().to_vec(),
            ));
        }
        if let Some(id) = &path.id {
            template.push(cryptoki::object::Attribute::Id(id.clone()));
        }
        let objects = session
            .find_objects(&template)
            .unwrap_or_else(|error| panic!("finding {key_path}: {error}"));
        for object in &objects {
            session
                .destroy_object(*object)
                .unwrap_or_else(|error| panic!("destroying {key_path}: {error}"));
        }
        !objects.is_empty()
    }

    /// Initializes a fresh token labelled `label` with random PINs.
    ///
    /// # Panics
    /// When SoftHSM2 refuses.
    pub fn new_token(&self, label: &str) -> SoftHsmToken {
        // Two tests must not take the same free slot, and no store may list
        // slots while a token is initialized (see `slot_table`).
        let _slot_table = super::token::slot_table();
        let module =
            Module::load(MODULE_NAME, &self.module).unwrap_or_else(|error| panic!("{error}"));
        let context = module.context();
        let random_pin = || {
            let mut bytes = [0u8; 8];
            rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut bytes)
                .unwrap_or_else(|error| panic!("randomness: {error}"));
            bytes
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
        };
        let token = SoftHsmToken {
            label: label.to_owned(),
            pin: random_pin(),
            so_pin: random_pin(),
        };
        let slot = context
            .get_all_slots()
            .unwrap_or_else(|error| panic!("listing slots: {error}"))
            .into_iter()
            .find(|slot| {
                context
                    .get_token_info(*slot)
                    .is_ok_and(|info| !info.token_initialized())
            })
            .unwrap_or_else(|| panic!("SoftHSM2 has no free slot"));
        let so_pin = AuthPin::from(token.so_pin.as_str());
        context
            .init_token(slot, &so_pin, label)
            .unwrap_or_else(|error| panic!("initializing token {label}: {error}"));
        let session = context
            .open_rw_session(slot)
            .unwrap_or_else(|error| panic!("opening a session on {label}: {error}"));
        session
            .login(UserType::So, Some(&so_pin))
            .unwrap_or_else(|error| panic!("SO login on {label}: {error}"));
        session
            .init_pin(&AuthPin::from(token.pin.as_str()))
            .unwrap_or_else(|error| panic!("setting the user PIN of {label}: {error}"));
        session
            .logout()
            .unwrap_or_else(|error| panic!("logging out of {label}: {error}"));
        token
    }
}
