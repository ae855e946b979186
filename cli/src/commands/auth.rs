//! `auth enable|disable`, `user add|delete|get|list|passwd|grant-role|revoke-role`
//! and `role add|delete|get|list|grant-permission|revoke-permission`, with
//! etcdctl's arguments, checks, password prompts and output.

use std::io::Write;

use clap::{ArgAction, Args, Subcommand};
use hub_proto::authpb::{permission::Type as PermType, Permission, UserAddOptions};
use hub_proto::etcdserverpb::auth_client::AuthClient;
use hub_proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGetRequest,
    AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleListRequest, AuthRoleRevokePermissionRequest,
    AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGetRequest,
    AuthUserGrantRoleRequest, AuthUserListRequest, AuthUserRevokeRoleRequest,
};
use tokio::time::Instant;
use crate::client::Conn;

use hub_proto::range::prefix_end;
use super::Ctx;
use crate::client::{ask_password, call, request};
use crate::error::CtlError;
use crate::flags::go_bool;
use crate::output::fields::AuthFields;
use crate::output::json;

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Enables authentication
    Enable(NoArgs),
    /// Disables authentication
    Disable(NoArgs),
}

#[derive(Args, Debug)]
pub struct NoArgs {
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Adds a new user
    Add(UserAddArgs),
    /// Deletes a user
    Delete(NamesArgs),
    /// Gets detailed information of a user
    Get(UserGetArgs),
    /// Lists all users
    List(NoArgs),
    /// Changes password of user
    Passwd(PasswdArgs),
    /// Grants a role to a user
    GrantRole(NamesArgs),
    /// Revokes a role from a user
    RevokeRole(NamesArgs),
}

#[derive(Args, Debug)]
pub struct NamesArgs {
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UserAddArgs {
    /// Read password from stdin instead of interactive terminal
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = go_bool)]
    pub interactive: bool,
    /// Supply password from the command line flag
    #[arg(long = "new-user-password", default_value = "")]
    pub new_user_password: String,
    /// Create a user without password (CN based auth only)
    #[arg(long = "no-password", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub no_password: bool,
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UserGetArgs {
    /// Show permissions of roles granted to the user
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub detail: bool,
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// If true, read password from stdin instead of interactive terminal
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = go_bool)]
    pub interactive: bool,
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Adds a new role
    Add(NamesArgs),
    /// Deletes a role
    Delete(NamesArgs),
    /// Gets detailed information of a role
    Get(NamesArgs),
    /// Lists all roles
    List(NoArgs),
    /// Grants a key to a role
    GrantPermission(PermArgs),
    /// Revokes a key from a role
    RevokePermission(PermArgs),
}

#[derive(Args, Debug)]
pub struct PermArgs {
    /// the permission covers the keys with the given prefix
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub prefix: bool,
    /// the permission covers the keys greater than or equal to the given key using byte compare
    #[arg(long = "from-key", action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = go_bool)]
    pub from_key: bool,
    pub args: Vec<String>,
}

async fn client(ctx: &Ctx) -> Result<(AuthClient<Conn>, Instant), CtlError> {
    let connector = ctx.connector()?;
    let deadline = connector.command_deadline();
    Ok((AuthClient::new(connector.connect(deadline).await?), deadline))
}

/// etcdctl's `readPasswordInteractive`: asked twice, must match.
fn password_interactive(name: &str) -> Result<String, CtlError> {
    let first = ask_password(&format!("Password of {name}: "))
        .map_err(|e| CtlError::bad_args(format!("failed to ask password: {e}")))?;
    if first.is_empty() {
        return Err(CtlError::bad_args("empty password"));
    }
    let second = ask_password(&format!("Type password of {name} again for confirmation: "))
        .map_err(|e| CtlError::bad_args(format!("failed to ask password: {e}")))?;
    if first != second {
        return Err(CtlError::bad_args("given passwords are different"));
    }
    Ok(first)
}

/// Go's `fmt.Scanf("%s")`: the first word of standard input.
fn password_from_stdin() -> Result<String, CtlError> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.split_whitespace().next().unwrap_or_default().to_string())
}

pub async fn auth(cmd: AuthCommand, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    match cmd {
        AuthCommand::Enable(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("auth enable command does not accept any arguments"));
            }
            let (mut auth, deadline) = client(ctx).await?;
            loop {
                match call(deadline, auth.auth_enable(request(AuthEnableRequest {}, deadline))).await {
                    Ok(_) => break,
                    // etcdctl adds the root role and grants it to root, then tries again.
                    Err(e) if e.to_string().ends_with("etcdserver: root user does not have root role") => {
                        call(deadline, auth.role_add(request(AuthRoleAddRequest { name: "root".into() }, deadline)))
                            .await?;
                        let grant = AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() };
                        call(deadline, auth.user_grant_role(request(grant, deadline))).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            writeln!(out, "Authentication Enabled")?;
        }
        AuthCommand::Disable(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("auth disable command does not accept any arguments"));
            }
            let (mut auth, deadline) = client(ctx).await?;
            call(deadline, auth.auth_disable(request(AuthDisableRequest {}, deadline))).await?;
            writeln!(out, "Authentication Disabled")?;
        }
    }
    Ok(())
}

pub async fn user(cmd: UserCommand, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let p = &ctx.printer;
    match cmd {
        UserCommand::Add(a) => {
            let [arg] = a.args.as_slice() else {
                return Err(CtlError::bad_args("user add command requires user name as its argument"));
            };
            let (name, password) = if a.no_password {
                (arg.clone(), String::new())
            } else if !a.new_user_password.is_empty() {
                (arg.clone(), a.new_user_password.clone())
            } else {
                match arg.split_once(':') {
                    Some(("", _)) => return Err(CtlError::bad_args("empty user name is not allowed")),
                    Some((name, password)) => (name.to_string(), password.to_string()),
                    None if a.interactive => (arg.clone(), password_interactive(arg)?),
                    None => (arg.clone(), password_from_stdin()?),
                }
            };
            let (mut auth, deadline) = client(ctx).await?;
            let req = AuthUserAddRequest {
                name: name.clone(),
                password,
                options: Some(UserAddOptions { no_password: a.no_password }),
                hashed_password: String::new(),
            };
            let resp = call(deadline, auth.user_add(request(req, deadline))).await?;
            p.auth(out, &resp, &resp.header, None, AuthFields::Header, |o| writeln!(o, "User {name} created"))
        }
        UserCommand::Delete(a) => {
            let [name] = a.args.as_slice() else {
                return Err(CtlError::bad_args("user delete command requires user name as its argument"));
            };
            let (mut auth, deadline) = client(ctx).await?;
            let req = AuthUserDeleteRequest { name: name.clone() };
            let resp = call(deadline, auth.user_delete(request(req, deadline))).await?;
            p.auth(out, &resp, &resp.header, None, AuthFields::Header, |o| writeln!(o, "User {name} deleted"))
        }
        UserCommand::Get(a) => {
            let [name] = a.args.as_slice() else {
                return Err(CtlError::bad_args("user get command requires user name as its argument"));
            };
            let (mut auth, deadline) = client(ctx).await?;
            let resp = call(deadline, auth.user_get(request(AuthUserGetRequest { name: name.clone() }, deadline))).await?;
            if a.detail {
                writeln!(out, "User: {name}")?;
                for role in &resp.roles {
                    writeln!(out)?;
                    let r = call(deadline, auth.role_get(request(AuthRoleGetRequest { role: role.clone() }, deadline)))
                        .await?;
                    print_role(ctx, out, role, &r)?;
                }
                return Ok(());
            }
            let list = Some(("roles", json::names(&resp.roles)));
            p.auth(out, &resp, &resp.header, list, AuthFields::Unsupported, |o| {
                write!(o, "User: {name}\nRoles:")?;
                resp.roles.iter().try_for_each(|r| write!(o, " {r}"))?;
                writeln!(o)
            })
        }
        UserCommand::List(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("user list command requires no arguments"));
            }
            let (mut auth, deadline) = client(ctx).await?;
            let resp = call(deadline, auth.user_list(request(AuthUserListRequest {}, deadline))).await?;
            let list = Some(("users", json::names(&resp.users)));
            p.auth(out, &resp, &resp.header, list, AuthFields::Unsupported, |o| resp.users.iter().try_for_each(|u| writeln!(o, "{u}")))
        }
        UserCommand::Passwd(a) => {
            let [name] = a.args.as_slice() else {
                return Err(CtlError::bad_args("user passwd command requires user name as its argument"));
            };
            let password = if a.interactive { password_interactive(name)? } else { password_from_stdin()? };
            let (mut auth, deadline) = client(ctx).await?;
            let req = AuthUserChangePasswordRequest { name: name.clone(), password, hashed_password: String::new() };
            let resp = call(deadline, auth.user_change_password(request(req, deadline))).await?;
            p.auth(out, &resp, &resp.header, None, AuthFields::Header, |o| writeln!(o, "Password updated"))
        }
        UserCommand::GrantRole(a) => {
            let [user, role] = a.args.as_slice() else {
                return Err(CtlError::bad_args(
                    "user grant command requires user name and role name as its argument",
                ));
            };
            let (mut auth, deadline) = client(ctx).await?;
            let req = AuthUserGrantRoleRequest { user: user.clone(), role: role.clone() };
            let resp = call(deadline, auth.user_grant_role(request(req, deadline))).await?;
            p.auth(out, &resp, &resp.header, None, AuthFields::Header, |o| writeln!(o, "Role {role} is granted to user {user}"))
        }
        UserCommand::RevokeRole(a) => {
            let [user, role] = a.args.as_slice() else {
                return Err(CtlError::bad_args("user revoke-role requires user name and role name as its argument"));
            };
            let (mut auth, deadline) = client(ctx).await?;
            let req = AuthUserRevokeRoleRequest { name: user.clone(), role: role.clone() };
            let resp = call(deadline, auth.user_revoke_role(request(req, deadline))).await?;
            p.auth(out, &resp, &resp.header, None, AuthFields::Header, |o| writeln!(o, "Role {role} is revoked from user {user}"))
        }
    }
}

/// etcdctl's `RoleGet` printer.
fn print_role(ctx: &Ctx, out: &mut dyn Write, role: &str, r: &AuthRoleGetResponse) -> Result<(), CtlError> {
    let list = Some(("perm", r.perm.iter().map(json::permission).collect()));
    ctx.printer.auth(out, r, &r.header, list, AuthFields::Perms(&r.perm), |o| {
        writeln!(o, "Role {role}")?;
        for (title, wanted) in [("KV Read:", PermType::Read), ("KV Write:", PermType::Write)] {
            writeln!(o, "{title}")?;
            let matches = |p: &&Permission| p.perm_type == wanted as i32 || p.perm_type == PermType::Readwrite as i32;
            for perm in r.perm.iter().filter(matches) {
                let key = String::from_utf8_lossy(&perm.key);
                if perm.range_end.is_empty() {
                    writeln!(o, "\t{key}")?;
                    continue;
                }
                if perm.range_end == [0] {
                    write!(o, "\t[{key}, <open ended>")?;
                } else {
                    write!(o, "\t[{key}, {})", String::from_utf8_lossy(&perm.range_end))?;
                }
                if prefix_end(&perm.key) == perm.range_end {
                    write!(o, " (prefix {key})")?;
                }
                writeln!(o)?;
            }
        }
        Ok(())
    })
}

/// etcdctl's `permRange`: the key and range end of `<key> [endkey]`,
/// `--prefix` or `--from-key`.
fn perm_range(a: &PermArgs, args: &[String]) -> Result<(Vec<u8>, Vec<u8>), CtlError> {
    let key = args[0].as_bytes();
    if key.is_empty() {
        if a.prefix && a.from_key {
            return Err(CtlError::bad_args("--from-key and --prefix flags are mutually exclusive"));
        }
        // The empty prefix covers every key: ["\x00", open end).
        let end = if a.prefix || a.from_key { vec![0] } else { Vec::new() };
        return Ok((vec![0], end));
    }
    let end = match (args.get(1), a.prefix, a.from_key) {
        (None, true, true) => return Err(CtlError::bad_args("--from-key and --prefix flags are mutually exclusive")),
        (None, true, false) => prefix_end(key),
        (None, false, true) => vec![0],
        (None, false, false) => Vec::new(),
        (Some(_), true, _) => return Err(CtlError::bad_args("unexpected endkey argument with --prefix flag")),
        (Some(_), _, true) => return Err(CtlError::bad_args("unexpected endkey argument with --from-key flag")),
        (Some(end), false, false) => end.as_bytes().to_vec(),
    };
    Ok((key.to_vec(), end))
}

pub async fn role(cmd: RoleCommand, ctx: &Ctx, out: &mut dyn Write) -> Result<(), CtlError> {
    let p = &ctx.printer;
    match cmd {
        RoleCommand::Add(a) => {
            let [name] = a.args.as_slice() else {
                return Err(CtlError::bad_args("role add command requires role name as its argument"));
            };
            let (mut auth, deadline) = client(ctx).await?;
            let resp = call(deadline, auth.role_add(request(AuthRoleAddRequest { name: name.clone() }, deadline))).await?;
            p.auth(out, &resp, &resp.header, None, AuthFields::Header, |o| writeln!(o, "Role {name} created"))
        }
        RoleCommand::Delete(a) => {
            let [name] = a.args.as_slice() else {
                return Err(CtlError::bad_args("role delete command requires role name as its argument"));
            };
            let (mut auth, deadline) = client(ctx).await?;
            let req = AuthRoleDeleteRequest { role: name.clone() };
            let resp = call(deadline, auth.role_delete(request(req, deadline))).await?;
            p.auth(out, &resp, &resp.header, None, AuthFields::Header, |o| writeln!(o, "Role {name} deleted"))
        }
        RoleCommand::Get(a) => {
            let [name] = a.args.as_slice() else {
                return Err(CtlError::bad_args("role get command requires role name as its argument"));
            };
            let (mut auth, deadline) = client(ctx).await?;
            let resp = call(deadline, auth.role_get(request(AuthRoleGetRequest { role: name.clone() }, deadline))).await?;
            print_role(ctx, out, name, &resp)
        }
        RoleCommand::List(a) => {
            if !a.args.is_empty() {
                return Err(CtlError::bad_args("role list command requires no arguments"));
            }
            let (mut auth, deadline) = client(ctx).await?;
            let resp = call(deadline, auth.role_list(request(AuthRoleListRequest {}, deadline))).await?;
            let list = Some(("roles", json::names(&resp.roles)));
            p.auth(out, &resp, &resp.header, list, AuthFields::Roles(&resp.roles), |o| resp.roles.iter().try_for_each(|r| writeln!(o, "{r}")))
        }
        RoleCommand::GrantPermission(a) => {
            if a.args.len() < 3 {
                return Err(CtlError::bad_args(
                    "role grant command requires role name, permission type, and key [endkey] as its argument",
                ));
            }
            let perm_type = match a.args[1].to_uppercase().as_str() {
                "READ" => PermType::Read,
                "WRITE" => PermType::Write,
                "READWRITE" => PermType::Readwrite,
                _ => return Err(CtlError::bad_args(format!("invalid permission type: {}", a.args[1]))),
            };
            let (key, range_end) = perm_range(&a, &a.args[2..])?;
            let name = &a.args[0];
            let (mut auth, deadline) = client(ctx).await?;
            let req = AuthRoleGrantPermissionRequest {
                name: name.clone(),
                perm: Some(Permission { perm_type: perm_type as i32, key, range_end }),
            };
            let resp = call(deadline, auth.role_grant_permission(request(req, deadline))).await?;
            p.auth(out, &resp, &resp.header, None, AuthFields::Header, |o| writeln!(o, "Role {name} updated"))
        }
        RoleCommand::RevokePermission(a) => {
            if a.args.len() < 2 {
                return Err(CtlError::bad_args(
                    "role revoke-permission command requires role name and key [endkey] as its argument",
                ));
            }
            let (key, range_end) = perm_range(&a, &a.args[1..])?;
            let (role, shown_key) = (&a.args[0], &a.args[1]);
            let (mut auth, deadline) = client(ctx).await?;
            let req = AuthRoleRevokePermissionRequest { role: role.clone(), key, range_end: range_end.clone() };
            let resp = call(deadline, auth.role_revoke_permission(request(req, deadline))).await?;
            p.auth(out, &resp, &resp.header, None, AuthFields::Header, |o| match range_end.as_slice() {
                [] => writeln!(o, "Permission of key {shown_key} is revoked from role {role}"),
                [0] => writeln!(o, "Permission of range [{shown_key}, <open ended> is revoked from role {role}"),
                end => writeln!(
                    o,
                    "Permission of range [{shown_key}, {}) is revoked from role {role}",
                    String::from_utf8_lossy(end)
                ),
            })
        }
    }
}
