//! Who may do what: the one place that decides.
//!
//! A caller's power on an app is its **effective app role**
//! ([`effective_app_role`]): the instance owner is `app_admin` everywhere, an
//! explicit membership gives its role, and (for now) an instance admin is
//! `app_admin` everywhere too. [`can`] then answers for one [`Action`].
//! The accounts issue extends this module (admins become implicit editors,
//! user management), not the handlers.

use crate::{AppRole, InstanceRole, User};

/// Something a caller may want to do. Instance-wide actions ignore the app
/// role; app actions need one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create a new app.
    CreateApp,
    /// See an app, its scripts, versions and domains.
    ReadApp,
    /// Change an app's name or settings.
    UpdateApp,
    /// Delete an app with everything in it.
    DeleteApp,
    /// Deploy a new version of a script.
    Deploy,
    /// Make an earlier version active again.
    Rollback,
    /// Delete a script with its versions.
    DeleteScript,
    /// Add or remove an app's domains.
    ManageDomains,
    /// Manage the instance's users (issue 4).
    ManageUsers,
}

impl Action {
    /// The permission's name, as `403 forbidden` answers name it.
    pub const fn name(self) -> &'static str {
        match self {
            Action::CreateApp => "app.create",
            Action::ReadApp => "app.read",
            Action::UpdateApp => "app.update",
            Action::DeleteApp => "app.delete",
            Action::Deploy => "script.deploy",
            Action::Rollback => "script.rollback",
            Action::DeleteScript => "script.delete",
            Action::ManageDomains => "domain.manage",
            Action::ManageUsers => "instance.manage_users",
        }
    }

    /// The least app role that allows this action, or `None` for an
    /// instance-wide action.
    const fn least_app_role(self) -> Option<AppRole> {
        match self {
            Action::CreateApp | Action::ManageUsers => None,
            Action::ReadApp => Some(AppRole::Viewer),
            Action::Deploy | Action::Rollback | Action::DeleteScript | Action::ManageDomains => {
                Some(AppRole::Editor)
            }
            Action::UpdateApp | Action::DeleteApp => Some(AppRole::AppAdmin),
        }
    }
}

/// The role `user` effectively holds on an app where its explicit membership
/// (if any) is `membership`; `None` means the app is invisible to it.
pub fn effective_app_role(user: &User, membership: Option<AppRole>) -> Option<AppRole> {
    match user.instance_role {
        InstanceRole::Owner => Some(AppRole::AppAdmin),
        // Until the accounts issue narrows it to `editor`, an instance admin
        // manages every app like the owner does.
        InstanceRole::Admin => Some(AppRole::AppAdmin),
        InstanceRole::Member => membership,
    }
}

/// Whether `caller` may do `action` on an app where its effective role is
/// `app_role` (ignored for instance-wide actions).
pub fn can(caller: &User, action: Action, app_role: Option<AppRole>) -> bool {
    if !caller.active {
        return false;
    }
    match action.least_app_role() {
        None => matches!(
            caller.instance_role,
            InstanceRole::Owner | InstanceRole::Admin
        ),
        Some(least) => app_role.is_some_and(|role| role >= least),
    }
}

/// The instance-wide permissions of `user`, as `GET /auth/me` lists them.
pub fn instance_permissions(user: &User) -> Vec<&'static str> {
    [Action::CreateApp, Action::ManageUsers]
        .into_iter()
        .filter(|action| can(user, *action, None))
        .map(Action::name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Timestamp, UserId};

    fn user(instance_role: InstanceRole) -> User {
        User {
            id: UserId(1),
            username: "someone".into(),
            email: "someone@example.com".into(),
            instance_role,
            active: true,
            created_at: Timestamp::now(),
        }
    }

    #[test]
    fn the_role_table() {
        use Action::*;
        let owner = user(InstanceRole::Owner);
        let admin = user(InstanceRole::Admin);
        let member = user(InstanceRole::Member);
        // (caller, membership, action, allowed)
        let cases = [
            (&owner, None, DeleteApp, true),
            (&owner, None, CreateApp, true),
            (&admin, None, Deploy, true),
            (&admin, None, CreateApp, true),
            (&member, None, ReadApp, false),
            (&member, None, CreateApp, false),
            (&member, Some(AppRole::Viewer), ReadApp, true),
            (&member, Some(AppRole::Viewer), Deploy, false),
            (&member, Some(AppRole::Editor), Deploy, true),
            (&member, Some(AppRole::Editor), ManageDomains, true),
            (&member, Some(AppRole::Editor), DeleteApp, false),
            (&member, Some(AppRole::AppAdmin), DeleteApp, true),
        ];
        for (caller, membership, action, allowed) in cases {
            let role = effective_app_role(caller, membership);
            assert_eq!(
                can(caller, action, role),
                allowed,
                "{:?} with {membership:?} doing {action:?}",
                caller.instance_role
            );
        }
        let mut inactive = user(InstanceRole::Owner);
        inactive.active = false;
        assert!(!can(&inactive, ReadApp, Some(AppRole::AppAdmin)));
        assert_eq!(instance_permissions(&member), Vec::<&str>::new());
        assert_eq!(
            instance_permissions(&owner),
            vec!["app.create", "instance.manage_users"]
        );
    }
}
