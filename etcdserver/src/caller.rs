//! Who sends a request, and the gate of its kind of request.
//!
//! The wire hands over what a request carries ([`Credentials`]: a token, a
//! client certificate's common name); [`EtcdServer::who`] turns it into the
//! user it stands for now (etcd's `AuthInfoFromCtx`, then `AuthInfoFromTLS`),
//! and [`EtcdServer::caller`] checks that user against the gate of the call
//! (`hub_store::auth::Access`, etcd 3.6's API-layer gates: a user, or the root
//! role). What a call reads or writes is authorized on top of that, where it
//! is read or applied.

use std::time::Instant;

use hub_store::auth::Access;
use hub_store::{AuthInfo, EtcdError};

use crate::token::{simple_token_index, Tokens};
use crate::{EtcdServer, Result};

/// What a request says about who sends it.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The `token` metadata (or `authorization`, as etcd's gateway sends it).
    pub token: Option<String>,
    /// With `--client-cert-auth`, the client certificate's common name.
    pub common_name: Option<String>,
}

impl EtcdServer {
    /// The user `credentials` stand for, once it passed `access`, the gate
    /// of its call.
    pub async fn caller(&self, credentials: &Credentials, access: Access) -> Result<AuthInfo> {
        let who = self.who(credentials).await?;
        self.gate(&who, access)?;
        Ok(who)
    }

    /// Checks `who`, resolved before (a call relayed for its caller), against
    /// the gate of a call.
    pub fn gate(&self, who: &AuthInfo, access: Access) -> Result<()> {
        Ok(self.node.state().lock().auth().check_access(who, access)?)
    }

    /// The user `credentials` stand for now: a token's user, else the
    /// certificate's name, else nobody (revision 0).
    pub async fn who(&self, credentials: &Credentials) -> Result<AuthInfo> {
        if let Some(token) = &credentials.token {
            return self.token_user(token).await.ok_or_else(|| {
                tracing::warn!("invalid auth token");
                EtcdError::InvalidAuthToken.into()
            });
        }
        if let Some(name) = &credentials.common_name {
            let sm = self.node.state().lock();
            if sm.auth().is_enabled() {
                return Ok(AuthInfo { username: name.clone(), revision: sm.auth().revision() });
            }
        }
        Ok(AuthInfo::default())
    }

    async fn token_user(&self, token: &str) -> Option<AuthInfo> {
        if let Tokens::Jwt(jwt) = self.config.tokens.as_ref() {
            return jwt.verify(token);
        }
        let lookup = || self.node.state().lock().auth_mut().simple_token_user(token, Instant::now());
        if let Some(info) = lookup() {
            return Some(info);
        }
        // Issued by an Authenticate this member has not applied yet: wait
        // until it has caught up with the leader, then look again.
        let index = simple_token_index(token)?;
        if index <= self.node.state().lock().applied_index() {
            return None;
        }
        self.node.read_index().await.ok()?;
        lookup()
    }
}
