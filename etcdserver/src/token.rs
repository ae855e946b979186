//! Auth tokens, as etcd's `--auth-token` configures them.
//!
//! - `simple`: a random prefix chosen by the member that authenticates,
//!   completed with the log index of the Authenticate entry; every member
//!   learns it when it applies that entry (`hub_store::auth`) and forgets it
//!   after `--auth-token-ttl` without use.
//! - `jwt,pub-key=FILE,priv-key=FILE,sign-method=ALG,ttl=DURATION`: a signed
//!   token carrying the user name, the auth revision and an expiry; any member
//!   with the public key verifies it. Without `priv-key` a member only
//!   verifies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hub_store::AuthInfo;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;

/// etcd's default JWT lifetime.
const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);

pub enum Tokens {
    Simple,
    Jwt(Jwt),
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokens::Simple => f.write_str("simple"),
            // Never print keys.
            Tokens::Jwt(j) => write!(f, "jwt({:?}, ttl {:?}, can sign: {})", j.algorithm, j.ttl, j.signing.is_some()),
        }
    }
}

pub struct Jwt {
    algorithm: Algorithm,
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    ttl: Duration,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// A `ttl=` option: Go's `time.ParseDuration`, not negative.
fn parse_go_duration(s: &str) -> Option<Duration> {
    hub_go::duration::parse_unsigned(s).ok()
}

impl Tokens {
    /// Parses `--auth-token`, reading the key files it names.
    pub fn parse(spec: &str) -> Result<Tokens, String> {
        let mut parts = spec.split(',');
        match parts.next().unwrap_or_default() {
            "simple" => Ok(Tokens::Simple),
            "jwt" => {
                let mut options = std::collections::HashMap::new();
                for part in parts {
                    let (k, v) = part.split_once('=').ok_or_else(|| format!("invalid auth token option {part:?}"))?;
                    options.insert(k, v);
                }
                Jwt::new(&options).map(Tokens::Jwt)
            }
            other => Err(format!("unknown token type {other:?}")),
        }
    }
}

impl Jwt {
    fn new(options: &std::collections::HashMap<&str, &str>) -> Result<Jwt, String> {
        let ttl = match options.get("ttl") {
            Some(t) => parse_go_duration(t).ok_or_else(|| format!("invalid JWT ttl {t:?}"))?,
            None => DEFAULT_JWT_TTL,
        };
        let method = options.get("sign-method").copied().unwrap_or_default();
        let algorithm: Algorithm =
            method.parse().map_err(|_| format!("auth: invalid auth signature method {method:?}"))?;
        let read = |opt: &str| -> Result<Option<Vec<u8>>, String> {
            options
                .get(opt)
                .filter(|f| !f.is_empty())
                .map(|f| std::fs::read(f).map_err(|e| format!("read {opt} {f}: {e}")))
                .transpose()
        };
        let (public, private) = (read("pub-key")?, read("priv-key")?);
        let bad = |what: &str, e: jsonwebtoken::errors::Error| format!("auth: {what} for {method}: {e}");
        let (signing, verifying) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = private.ok_or("auth: missing key data")?;
                (Some(EncodingKey::from_secret(&secret)), DecodingKey::from_secret(&secret))
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => (
                private.map(|k| EncodingKey::from_rsa_pem(&k)).transpose().map_err(|e| bad("private key", e))?,
                DecodingKey::from_rsa_pem(&public.ok_or("auth: missing key data")?)
                    .map_err(|e| bad("public key", e))?,
            ),
            Algorithm::ES256 | Algorithm::ES384 => (
                private.map(|k| EncodingKey::from_ec_pem(&k)).transpose().map_err(|e| bad("private key", e))?,
                DecodingKey::from_ec_pem(&public.ok_or("auth: missing key data")?).map_err(|e| bad("public key", e))?,
            ),
            Algorithm::EdDSA => (
                private.map(|k| EncodingKey::from_ed_pem(&k)).transpose().map_err(|e| bad("private key", e))?,
                DecodingKey::from_ed_pem(&public.ok_or("auth: missing key data")?).map_err(|e| bad("public key", e))?,
            ),
        };
        let jwt = Jwt { algorithm, signing, verifying, ttl };
        if jwt.signing.is_some() {
            // etcd refuses keys that do not belong together.
            let probe = jwt.sign("", 0).map_err(|e| format!("auth: cannot sign with the private key: {e}"))?;
            jwt.verify(&probe).ok_or("auth: public and private keys don't match")?;
        }
        Ok(jwt)
    }

    pub fn sign(&self, username: &str, revision: u64) -> Result<String, String> {
        let key = self.signing.as_ref().ok_or("auth: token signing attempted with verify-only key")?;
        let exp = (SystemTime::now() + self.ttl).duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
        let claims = Claims { username: username.to_string(), revision, exp };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).map_err(|e| e.to_string())
    }

    /// The user and auth revision of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Option<AuthInfo> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        validation.required_spec_claims = ["exp".to_string()].into();
        let data = jsonwebtoken::decode::<Claims>(token, &self.verifying, &validation).ok()?;
        Some(AuthInfo { username: data.claims.username, revision: data.claims.revision })
    }
}

/// The random part of a simple token (etcd: 16 letters).
pub fn simple_token_prefix() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..16).map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char).collect()
}

/// The log index a simple token was assigned at (`prefix.index`).
pub fn simple_token_index(token: &str) -> Option<u64> {
    token.rsplit_once('.')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn simple_tokens_carry_their_index() {
        let t = format!("{}.42", simple_token_prefix());
        assert_eq!(simple_token_index(&t), Some(42));
        assert_eq!(simple_token_index("garbage"), None);
    }

    #[test]
    fn hmac_tokens_round_trip_and_tampering_fails() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, b"secret").unwrap();
        let Tokens::Jwt(jwt) = Tokens::parse(&format!("jwt,priv-key={},sign-method=HS256", key.display())).unwrap()
        else {
            panic!("not jwt")
        };
        let t = jwt.sign("alice", 7).unwrap();
        assert_eq!(jwt.verify(&t), Some(AuthInfo { username: "alice".into(), revision: 7 }));
        let mut tampered = t.clone().into_bytes();
        let mid = tampered.len() / 2;
        tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
        assert_eq!(jwt.verify(&String::from_utf8(tampered).unwrap()), None);
        assert!(Tokens::parse("jwt,sign-method=NOPE").is_err());
        assert!(Tokens::parse("bogus").is_err());
    }
}
