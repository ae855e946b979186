//! etcd's auth operations: AuthEnable/Disable, Authenticate, User* and Role*.
//!
//! Changes are proposed to raft and applied by `hub_store::auth` on every
//! member (which also checks that the caller holds the root role). Passwords
//! are bcrypt-hashed here, before proposing, so the log holds only hashes
//! (etcd 3.5's `hashedPassword`); they are never logged. Gets and lists are
//! answered from local state after a ReadIndex, as linearizable as etcd's.

use hub_proto::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthStatusResponse, AuthEnableRequest, AuthEnableResponse, AuthRoleAddRequest,
    AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse, AuthRoleGetRequest, AuthRoleGetResponse,
    AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthUserAddRequest, AuthUserAddResponse,
    AuthUserChangePasswordRequest, AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse,
    AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse, AuthUserListResponse,
    AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse,
    InternalAuthenticateRequest, InternalRaftRequest, ResponseHeader,
};
use hub_store::auth::AuthStore;
use hub_store::{AuthInfo, EtcdError, Response};

use crate::token::{simple_token_prefix, Tokens};
use crate::{unexpected, Error, EtcdServer, Result};

impl EtcdServer {
    /// Proposes an auth change as `who`; the answer is a header.
    async fn auth_change(&self, who: &AuthInfo, req: InternalRaftRequest) -> Result<Option<ResponseHeader>> {
        match self.propose(who, req).await? {
            Response::Auth(_) => Ok(self.header(0)),
            other => Err(unexpected(other)),
        }
    }

    async fn hash_password(&self, password: String) -> Result<String> {
        let cost = self.config.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::Internal(format!("failed to hash the password: {e}")))
    }

    /// Reads the auth state after a ReadIndex (`read` checks who may).
    async fn read_auth<T>(&self, read: impl FnOnce(&AuthStore) -> Result<T, EtcdError>) -> Result<T> {
        self.read_index().await?;
        Ok(read(self.node.state().lock().auth())?)
    }

    /// etcd 3.5's AuthStatus: whether auth is on, and the auth store's
    /// revision. etcd asks through raft; a read index gives the same answer
    /// without an entry. (Who may ask is the gate's: the root role.)
    pub async fn auth_status(&self) -> Result<AuthStatusResponse> {
        let (enabled, auth_revision) = self.read_auth(|auth| Ok((auth.is_enabled(), auth.revision()))).await?;
        Ok(AuthStatusResponse { header: self.header(0), enabled, auth_revision })
    }

    /// etcd's `CheckPassword`: the auth revision the password was checked at.
    async fn check_password(&self, name: &str, password: String) -> Result<u64> {
        let (hash, revision) = {
            let sm = self.node.state().lock();
            let auth = sm.auth();
            if !auth.is_enabled() {
                return Err(EtcdError::AuthNotEnabled.into());
            }
            let user = auth.user(name).ok_or(EtcdError::AuthFailed)?;
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(EtcdError::NoPasswordUser.into());
            }
            (String::from_utf8_lossy(&user.password).into_owned(), auth.revision())
        };
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        if !ok {
            tracing::info!(user = %name, "authentication failed: invalid password");
            return Err(EtcdError::AuthFailed.into());
        }
        Ok(revision)
    }

    pub async fn authenticate(&self, r: AuthenticateRequest) -> Result<AuthenticateResponse> {
        self.read_index().await?;
        loop {
            let checked = self.check_password(&r.name, r.password.clone()).await?;
            let simple_token = match self.config.tokens.as_ref() {
                Tokens::Simple => simple_token_prefix(),
                Tokens::Jwt(_) => String::new(),
            };
            // No password in the log: it was checked above. No header
            // either: authenticating needs no permission.
            let auth = InternalAuthenticateRequest { name: r.name.clone(), password: String::new(), simple_token };
            let mut resp = match self
                .node
                .propose(InternalRaftRequest { authenticate: Some(auth), ..Default::default() })
                .await?
            {
                Response::Auth(resp) => resp,
                other => return Err(unexpected(other)),
            };
            let revision = self.node.state().lock().auth().revision();
            if checked != revision {
                // The password may have changed meanwhile: check it again.
                tracing::info!("auth revision changed while authenticating; retrying");
                continue;
            }
            if let Tokens::Jwt(jwt) = self.config.tokens.as_ref() {
                resp.token = jwt.sign(&r.name, revision).map_err(Error::Internal)?;
            }
            resp.header = self.header(0);
            return Ok(resp);
        }
    }

    pub async fn user_add(&self, who: &AuthInfo, mut r: AuthUserAddRequest) -> Result<AuthUserAddResponse> {
        if r.name.is_empty() {
            return Err(EtcdError::UserEmpty.into());
        }
        let password = std::mem::take(&mut r.password);
        if !r.options.as_ref().is_some_and(|o| o.no_password) {
            r.hashed_password = self.hash_password(password).await?;
        }
        let header =
            self.auth_change(who, InternalRaftRequest { auth_user_add: Some(r), ..Default::default() }).await?;
        Ok(AuthUserAddResponse { header })
    }

    pub async fn user_change_password(
        &self,
        who: &AuthInfo,
        mut r: AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse> {
        r.hashed_password = self.hash_password(std::mem::take(&mut r.password)).await?;
        let header = self
            .auth_change(who, InternalRaftRequest { auth_user_change_password: Some(r), ..Default::default() })
            .await?;
        Ok(AuthUserChangePasswordResponse { header })
    }

    /// A user may read its own roles; anyone else's need the root role.
    pub async fn user_get(&self, who: &AuthInfo, r: AuthUserGetRequest) -> Result<AuthUserGetResponse> {
        let roles = self
            .read_auth(|auth| {
                if r.name != who.username {
                    auth.check_admin(who)?;
                }
                auth.user(&r.name).map(|u| u.roles.clone()).ok_or(EtcdError::UserNotFound)
            })
            .await?;
        Ok(AuthUserGetResponse { header: self.header(0), roles })
    }

    pub async fn user_list(&self, who: &AuthInfo) -> Result<AuthUserListResponse> {
        let users = self
            .read_auth(|auth| {
                auth.check_admin(who)?;
                Ok(auth.users().map(|u| String::from_utf8_lossy(&u.name).into_owned()).collect())
            })
            .await?;
        Ok(AuthUserListResponse { header: self.header(0), users })
    }

    /// A user may read the roles it holds; others need the root role.
    pub async fn role_get(&self, who: &AuthInfo, r: AuthRoleGetRequest) -> Result<AuthRoleGetResponse> {
        let perm = self
            .read_auth(|auth| {
                if !auth.has_role(&who.username, &r.role) {
                    auth.check_admin(who)?;
                }
                auth.role(&r.role).map(|role| role.key_permission.clone()).ok_or(EtcdError::RoleNotFound)
            })
            .await?;
        Ok(AuthRoleGetResponse { header: self.header(0), perm })
    }

    pub async fn role_list(&self, who: &AuthInfo) -> Result<AuthRoleListResponse> {
        let roles = self
            .read_auth(|auth| {
                auth.check_admin(who)?;
                Ok(auth.roles().map(|r| String::from_utf8_lossy(&r.name).into_owned()).collect())
            })
            .await?;
        Ok(AuthRoleListResponse { header: self.header(0), roles })
    }

    pub async fn auth_enable(&self, who: &AuthInfo, r: AuthEnableRequest) -> Result<AuthEnableResponse> {
        let header = self.auth_change(who, InternalRaftRequest { auth_enable: Some(r), ..Default::default() }).await?;
        Ok(AuthEnableResponse { header })
    }

    pub async fn auth_disable(&self, who: &AuthInfo, r: AuthDisableRequest) -> Result<AuthDisableResponse> {
        let header = self.auth_change(who, InternalRaftRequest { auth_disable: Some(r), ..Default::default() }).await?;
        Ok(AuthDisableResponse { header })
    }

    pub async fn user_delete(&self, who: &AuthInfo, r: AuthUserDeleteRequest) -> Result<AuthUserDeleteResponse> {
        let header =
            self.auth_change(who, InternalRaftRequest { auth_user_delete: Some(r), ..Default::default() }).await?;
        Ok(AuthUserDeleteResponse { header })
    }

    pub async fn user_grant_role(
        &self,
        who: &AuthInfo,
        r: AuthUserGrantRoleRequest,
    ) -> Result<AuthUserGrantRoleResponse> {
        let header =
            self.auth_change(who, InternalRaftRequest { auth_user_grant_role: Some(r), ..Default::default() }).await?;
        Ok(AuthUserGrantRoleResponse { header })
    }

    pub async fn user_revoke_role(
        &self,
        who: &AuthInfo,
        r: AuthUserRevokeRoleRequest,
    ) -> Result<AuthUserRevokeRoleResponse> {
        let header =
            self.auth_change(who, InternalRaftRequest { auth_user_revoke_role: Some(r), ..Default::default() }).await?;
        Ok(AuthUserRevokeRoleResponse { header })
    }

    pub async fn role_add(&self, who: &AuthInfo, r: AuthRoleAddRequest) -> Result<AuthRoleAddResponse> {
        let header =
            self.auth_change(who, InternalRaftRequest { auth_role_add: Some(r), ..Default::default() }).await?;
        Ok(AuthRoleAddResponse { header })
    }

    pub async fn role_delete(&self, who: &AuthInfo, r: AuthRoleDeleteRequest) -> Result<AuthRoleDeleteResponse> {
        let header =
            self.auth_change(who, InternalRaftRequest { auth_role_delete: Some(r), ..Default::default() }).await?;
        Ok(AuthRoleDeleteResponse { header })
    }

    pub async fn role_grant_permission(
        &self,
        who: &AuthInfo,
        r: AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse> {
        let header = self
            .auth_change(who, InternalRaftRequest { auth_role_grant_permission: Some(r), ..Default::default() })
            .await?;
        Ok(AuthRoleGrantPermissionResponse { header })
    }

    pub async fn role_revoke_permission(
        &self,
        who: &AuthInfo,
        r: AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse> {
        let header = self
            .auth_change(who, InternalRaftRequest { auth_role_revoke_permission: Some(r), ..Default::default() })
            .await?;
        Ok(AuthRoleRevokePermissionResponse { header })
    }
}
