//! The Auth service: etcd's AuthEnable/Disable, Authenticate, User* and Role*.
//!
//! Changes are proposed to raft and applied by `hub_store::auth` on every
//! member (which also checks that the caller holds the root role). Passwords
//! are bcrypt-hashed here, before proposing, so the log holds only hashes
//! (etcd 3.5's `hashedPassword`); they are never logged. Gets and lists are
//! answered from local state after a ReadIndex, as linearizable as etcd's.

use hub_proto::etcdserverpb::{
    auth_server::Auth, AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse, AuthRoleGetRequest,
    AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse, AuthRoleListRequest,
    AuthRoleListResponse, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthUserAddRequest,
    AuthUserAddResponse, AuthUserChangePasswordRequest, AuthUserChangePasswordResponse, AuthUserDeleteRequest,
    AuthUserDeleteResponse, AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest,
    AuthUserGrantRoleResponse, AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse, InternalAuthenticateRequest,
    InternalRaftRequest, ResponseHeader,
};
use hub_store::auth::AuthStore;
use hub_store::{AuthInfo, EtcdError, Response};
use tonic::{Request, Response as GrpcResponse, Status};

use crate::token::{simple_token_prefix, Tokens};
use crate::{status, Context};

pub struct AuthService {
    ctx: Context,
}

impl AuthService {
    pub fn new(ctx: Context) -> Self {
        AuthService { ctx }
    }

    /// Proposes an auth change as `who`; the answer is a header.
    async fn change(&self, who: &AuthInfo, req: InternalRaftRequest) -> Result<Option<ResponseHeader>, Status> {
        match self.ctx.propose(who, req).await? {
            Response::Auth(_) => Ok(self.ctx.header(0)),
            other => Err(Status::internal(format!("unexpected apply result {other:?}"))),
        }
    }

    async fn hash(&self, password: String) -> Result<String, Status> {
        let cost = self.ctx.config.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| Status::internal(format!("hub: {e}")))?
            .map_err(|e| Status::internal(format!("failed to hash the password: {e}")))
    }

    /// Reads the auth state after a ReadIndex (`read` checks who may).
    async fn read<T>(&self, read: impl FnOnce(&AuthStore) -> Result<T, EtcdError>) -> Result<T, Status> {
        self.ctx.node.read_index().await.map_err(status::from_store)?;
        read(self.ctx.node.state().lock().auth()).map_err(status::from_etcd)
    }

    /// etcd's `CheckPassword`: the auth revision the password was checked at.
    async fn check_password(&self, name: &str, password: String) -> Result<u64, Status> {
        let (hash, revision) = {
            let sm = self.ctx.node.state().lock();
            let auth = sm.auth();
            if !auth.is_enabled() {
                return Err(status::from_etcd(EtcdError::AuthNotEnabled));
            }
            let user = auth.user(name).ok_or_else(|| status::from_etcd(EtcdError::AuthFailed))?;
            if user.options.as_ref().is_some_and(|o| o.no_password) {
                return Err(status::from_etcd(EtcdError::NoPasswordUser));
            }
            (String::from_utf8_lossy(&user.password).into_owned(), auth.revision())
        };
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .map_err(|e| Status::internal(format!("hub: {e}")))?;
        if !ok {
            tracing::info!(user = %name, "authentication failed: invalid password");
            return Err(status::from_etcd(EtcdError::AuthFailed));
        }
        Ok(revision)
    }
}

fn internal(f: impl FnOnce(&mut InternalRaftRequest)) -> InternalRaftRequest {
    let mut r = InternalRaftRequest::default();
    f(&mut r);
    r
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, req: Request<AuthEnableRequest>) -> Result<GrpcResponse<AuthEnableResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let header = self.change(&who, internal(|r| r.auth_enable = Some(req.into_inner()))).await?;
        Ok(GrpcResponse::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        req: Request<AuthDisableRequest>,
    ) -> Result<GrpcResponse<AuthDisableResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let header = self.change(&who, internal(|r| r.auth_disable = Some(req.into_inner()))).await?;
        Ok(GrpcResponse::new(AuthDisableResponse { header }))
    }

    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Result<GrpcResponse<AuthenticateResponse>, Status> {
        let r = req.into_inner();
        self.ctx.node.read_index().await.map_err(status::from_store)?;
        loop {
            let checked = self.check_password(&r.name, r.password.clone()).await?;
            let simple_token = match self.ctx.config.tokens.as_ref() {
                Tokens::Simple => simple_token_prefix(),
                Tokens::Jwt(_) => String::new(),
            };
            // No password in the log: it was checked above. No header
            // either: authenticating needs no permission.
            let auth = InternalAuthenticateRequest { name: r.name.clone(), password: String::new(), simple_token };
            let mut resp = match self.ctx.node.propose(internal(|i| i.authenticate = Some(auth))).await {
                Ok(Response::Auth(resp)) => resp,
                Ok(other) => return Err(Status::internal(format!("unexpected apply result {other:?}"))),
                Err(e) => return Err(status::from_store(e)),
            };
            let revision = self.ctx.node.state().lock().auth().revision();
            if checked != revision {
                // The password may have changed meanwhile: check it again.
                tracing::info!("auth revision changed while authenticating; retrying");
                continue;
            }
            if let Tokens::Jwt(jwt) = self.ctx.config.tokens.as_ref() {
                resp.token = jwt.sign(&r.name, revision).map_err(Status::internal)?;
            }
            resp.header = self.ctx.header(0);
            return Ok(GrpcResponse::new(resp));
        }
    }

    async fn user_add(&self, req: Request<AuthUserAddRequest>) -> Result<GrpcResponse<AuthUserAddResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let mut r = req.into_inner();
        if r.name.is_empty() {
            return Err(status::from_etcd(EtcdError::UserEmpty));
        }
        let password = std::mem::take(&mut r.password);
        if !r.options.as_ref().is_some_and(|o| o.no_password) {
            r.hashed_password = self.hash(password).await?;
        }
        let header = self.change(&who, internal(|i| i.auth_user_add = Some(r))).await?;
        Ok(GrpcResponse::new(AuthUserAddResponse { header }))
    }

    async fn user_get(&self, req: Request<AuthUserGetRequest>) -> Result<GrpcResponse<AuthUserGetResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let r = req.into_inner();
        // A user may read its own roles; anyone else's need the root role.
        let roles = self
            .read(|auth| {
                if r.name != who.username {
                    auth.check_admin(&who)?;
                }
                auth.user(&r.name).map(|u| u.roles.clone()).ok_or(EtcdError::UserNotFound)
            })
            .await?;
        Ok(GrpcResponse::new(AuthUserGetResponse { header: self.ctx.header(0), roles }))
    }

    async fn user_list(&self, req: Request<AuthUserListRequest>) -> Result<GrpcResponse<AuthUserListResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let users = self
            .read(|auth| {
                auth.check_admin(&who)?;
                Ok(auth.users().map(|u| String::from_utf8_lossy(&u.name).into_owned()).collect())
            })
            .await?;
        Ok(GrpcResponse::new(AuthUserListResponse { header: self.ctx.header(0), users }))
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<GrpcResponse<AuthUserDeleteResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let header = self.change(&who, internal(|i| i.auth_user_delete = Some(req.into_inner()))).await?;
        Ok(GrpcResponse::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<GrpcResponse<AuthUserChangePasswordResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let mut r = req.into_inner();
        r.hashed_password = self.hash(std::mem::take(&mut r.password)).await?;
        let header = self.change(&who, internal(|i| i.auth_user_change_password = Some(r))).await?;
        Ok(GrpcResponse::new(AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<GrpcResponse<AuthUserGrantRoleResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let header = self.change(&who, internal(|i| i.auth_user_grant_role = Some(req.into_inner()))).await?;
        Ok(GrpcResponse::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<GrpcResponse<AuthUserRevokeRoleResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let header = self.change(&who, internal(|i| i.auth_user_revoke_role = Some(req.into_inner()))).await?;
        Ok(GrpcResponse::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(&self, req: Request<AuthRoleAddRequest>) -> Result<GrpcResponse<AuthRoleAddResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let header = self.change(&who, internal(|i| i.auth_role_add = Some(req.into_inner()))).await?;
        Ok(GrpcResponse::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(&self, req: Request<AuthRoleGetRequest>) -> Result<GrpcResponse<AuthRoleGetResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let r = req.into_inner();
        // A user may read the roles it holds; others need the root role.
        let perm = self
            .read(|auth| {
                if !auth.has_role(&who.username, &r.role) {
                    auth.check_admin(&who)?;
                }
                auth.role(&r.role).map(|role| role.key_permission.clone()).ok_or(EtcdError::RoleNotFound)
            })
            .await?;
        Ok(GrpcResponse::new(AuthRoleGetResponse { header: self.ctx.header(0), perm }))
    }

    async fn role_list(&self, req: Request<AuthRoleListRequest>) -> Result<GrpcResponse<AuthRoleListResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let roles = self
            .read(|auth| {
                auth.check_admin(&who)?;
                Ok(auth.roles().map(|r| String::from_utf8_lossy(&r.name).into_owned()).collect())
            })
            .await?;
        Ok(GrpcResponse::new(AuthRoleListResponse { header: self.ctx.header(0), roles }))
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<GrpcResponse<AuthRoleDeleteResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let header = self.change(&who, internal(|i| i.auth_role_delete = Some(req.into_inner()))).await?;
        Ok(GrpcResponse::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<GrpcResponse<AuthRoleGrantPermissionResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let header =
            self.change(&who, internal(|i| i.auth_role_grant_permission = Some(req.into_inner()))).await?;
        Ok(GrpcResponse::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<GrpcResponse<AuthRoleRevokePermissionResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let header =
            self.change(&who, internal(|i| i.auth_role_revoke_permission = Some(req.into_inner()))).await?;
        Ok(GrpcResponse::new(AuthRoleRevokePermissionResponse { header }))
    }
}
