//! The Auth service on the wire; each call is the server layer's operation
//! (`hub_etcdserver::auth`), which hashes passwords before proposing.

use hub_proto::etcdserverpb::{
    auth_server::Auth, AuthDisableRequest, AuthDisableResponse, AuthStatusRequest, AuthStatusResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse, AuthRoleGetRequest,
    AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse, AuthRoleListRequest,
    AuthRoleListResponse, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthUserAddRequest,
    AuthUserAddResponse, AuthUserChangePasswordRequest, AuthUserChangePasswordResponse, AuthUserDeleteRequest,
    AuthUserDeleteResponse, AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest,
    AuthUserGrantRoleResponse, AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse,
};
use tonic::{Request, Response, Status};

use crate::{status, Context};

pub struct AuthService {
    ctx: Context,
}

impl AuthService {
    pub fn new(ctx: Context) -> Self {
        AuthService { ctx }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, req: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.auth_enable(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn auth_disable(&self, req: Request<AuthDisableRequest>) -> Result<Response<AuthDisableResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.auth_disable(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn auth_status(&self, req: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        self.ctx.caller(&req).await?;
        Ok(Response::new(self.ctx.server.auth_status().await.map_err(status::from_server)?))
    }

    async fn authenticate(&self, req: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        // Authenticating needs no permission: the password is checked.
        let resp = self.ctx.server.authenticate(req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn user_add(&self, req: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.user_add(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn user_get(&self, req: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.user_get(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn user_list(&self, req: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.user_list(&who).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.user_delete(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.user_change_password(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.user_grant_role(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.user_revoke_role(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn role_add(&self, req: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.role_add(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn role_get(&self, req: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.role_get(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn role_list(&self, req: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.role_list(&who).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.role_delete(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.role_grant_permission(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let who = self.ctx.caller(&req).await?;
        let resp = self.ctx.server.role_revoke_permission(&who, req.into_inner()).await.map_err(status::from_server)?;
        Ok(Response::new(resp))
    }
}
