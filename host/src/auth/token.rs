//! Token formats.
//!
//! A stored token is `weir_` followed by 32 random bytes in hex. Only its
//! SHA-256 is stored: the token has 256 bits of entropy, so a fast hash is
//! enough (a slow KDF protects guessable passwords; nobody can enumerate
//! 2^256 candidates), and a stolen database does not yield usable tokens.
//!
//! A run token is `weirrun_<run id>_<hex HMAC-SHA256(key, run id)>`. It is
//! derived when the job is built, never stored; the key lives in the store's
//! `server_secrets` table.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::AuthError;
use super::scope::RunScope;
use crate::domain::Role;
use crate::domain::RunId;
pub(crate) use crate::domain::TokenRecord;

pub(super) const TOKEN_PREFIX: &str = "weir_";
pub(crate) const RUN_TOKEN_PREFIX: &str = "weirrun_";
/// How many hex characters of a token `weir token list` shows.
const SHOWN_PREFIX: usize = 8;

/// What `weir token create` asks for.
#[derive(Debug, Clone)]
pub(crate) struct NewToken {
    pub name: String,
    pub role: Role,
    pub team: Option<String>,
    pub pools: Vec<String>,
}

impl TokenRecord {
    pub fn scope(&self) -> RunScope {
        RunScope {
            token_id: self.id.clone(),
            role: self.role,
            team: self.team.clone(),
            pools: self.pools.clone(),
        }
    }
}

pub(crate) fn random_bytes() -> Result<[u8; 32], AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| AuthError::Unauthenticated(format!("the system random source failed: {e}")))?;
    Ok(bytes)
}

pub(crate) fn random_hex() -> Result<String, AuthError> {
    Ok(hex::encode(random_bytes()?))
}

/// A new token: (text shown once, hash to store, prefix to list).
pub(crate) fn generate_token() -> Result<(String, String, String), AuthError> {
    let secret = random_hex()?;
    let text = format!("{TOKEN_PREFIX}{secret}");
    let prefix = format!("{TOKEN_PREFIX}{}", &secret[..SHOWN_PREFIX]);
    Ok((text.clone(), hash_token(&text), prefix))
}

/// The stored form of a token: hex SHA-256 of its whole text.
pub(crate) fn hash_token(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The HMAC key run tokens are derived from.
#[derive(Clone)]
pub struct RunTokenKey(Vec<u8>);

impl std::fmt::Debug for RunTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunTokenKey(..)")
    }
}

impl RunTokenKey {
    pub fn new(key: Vec<u8>) -> Self {
        Self(key)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        hex::decode(text).ok().filter(|k| k.len() >= 16).map(Self)
    }

    fn mac(&self, run: RunId) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(run.to_string().as_bytes());
        mac
    }

    /// The run token of `run`.
    pub fn token_for(&self, run: RunId) -> String {
        let tag = hex::encode(self.mac(run).finalize().into_bytes());
        format!("{RUN_TOKEN_PREFIX}{run}_{tag}")
    }

    /// The run a run token belongs to, if its MAC is right (compared in
    /// constant time by `verify_slice`).
    pub fn verify(&self, text: &str) -> Option<RunId> {
        let rest = text.strip_prefix(RUN_TOKEN_PREFIX)?;
        let (id, tag) = rest.split_once('_')?;
        let run: RunId = uuid::Uuid::parse_str(id).ok()?;
        let tag = hex::decode(tag).ok()?;
        self.mac(run).verify_slice(&tag).ok()?;
        Some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, hash_a, prefix_a) = generate_token().unwrap_or_else(|e| panic!("{e}"));
        let (b, hash_b, _) = generate_token().unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert!(a.starts_with(&prefix_a));
        assert_eq!(hash_a, hash_token(&a));
        assert_ne!(hash_a, hash_b);
        assert_eq!(hash_a.len(), 64);
        assert!(!hash_a.contains(&a[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn run_tokens_verify_only_with_their_key_and_run() {
        let key = RunTokenKey::new(vec![7; 32]);
        let other_key = RunTokenKey::new(vec![8; 32]);
        let run = uuid::Uuid::now_v7();
        let other = uuid::Uuid::now_v7();
        let token = key.token_for(run);
        assert_eq!(key.verify(&token), Some(run));
        assert_eq!(other_key.verify(&token), None);
        // Swapping the run id in the text breaks the MAC.
        let forged = token.replace(&run.to_string(), &other.to_string());
        assert_eq!(key.verify(&forged), None);
        for bad in [
            "",
            "weirrun_",
            "weirrun_nope_00",
            &format!("weirrun_{run}"),
            &format!("weirrun_{run}_zz"),
            &format!("weirrun_{run}_00"),
            &token[..token.len() - 2],
            &format!("weir_{run}"),
        ] {
            assert_eq!(key.verify(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn run_token_keys_parse_from_hex() {
        assert!(RunTokenKey::from_hex(&"ab".repeat(32)).is_some());
        assert!(RunTokenKey::from_hex("abcd").is_none());
        assert!(RunTokenKey::from_hex("not hex").is_none());
    }
}
