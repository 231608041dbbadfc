//! Who may do what: the one place that decides.
//!
//! A caller's power on an app is its **effective app role**
//! ([`effective_app_role`], the `my_role` of every app in an answer): the
//! instance owner is `app_admin` everywhere, an instance admin is an implicit
//! `editor` everywhere (so it cannot manage memberships or delete apps), and
//! a member has exactly the role of its explicit membership, or no access.
//! [`can`] then answers for one [`Action`]. Instance-wide actions depend on
//! the instance role alone; [`may_change_user`] adds the owner-only rules of
//! user management.

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
    /// Upload and delete an app's static files.
    ManageFiles,
    /// Set and delete an app's variables and secrets, replace its
    /// outbound-HTTP allow-list, delete its key-value entries.
    ManageConfig,
    /// Create, change and delete an app's cron schedules.
    ManageSchedules,
    /// List, add, change and remove an app's members, and look up a user to add.
    ManageMembers,
    /// List the user directory, create users, change instance roles of
    /// non-owners, deactivate and reactivate them (`InstanceManageUsers`).
    ManageUsers,
    /// Change an owner's account or make someone an owner.
    ManageOwners,
    /// Read the audit log.
    ReadAudit,
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
            Action::ManageFiles => "file.manage",
            Action::ManageConfig => "config.manage",
            Action::ManageSchedules => "schedule.manage",
            Action::ManageMembers => "app.manage_members",
            Action::ManageUsers => "instance.manage_users",
            Action::ManageOwners => "instance.manage_owners",
            Action::ReadAudit => "instance.read_audit",
        }
    }

    /// The least app role that allows this action, or `None` for an
    /// instance-wide action.
    const fn least_app_role(self) -> Option<AppRole> {
        match self {
            Action::CreateApp | Action::ManageUsers | Action::ManageOwners | Action::ReadAudit => {
                None
            }
            Action::ReadApp => Some(AppRole::Viewer),
            Action::Deploy | Action::Rollback | Action::DeleteScript | Action::ManageDomains => {
                Some(AppRole::Editor)
            }
            Action::ManageFiles => Some(AppRole::Editor),
            Action::ManageConfig => Some(AppRole::Editor),
            Action::ManageSchedules => Some(AppRole::Editor),
            Action::UpdateApp | Action::DeleteApp | Action::ManageMembers => {
                Some(AppRole::AppAdmin)
            }
        }
    }
}

/// The role `user` effectively holds on an app where its explicit membership
/// (if any) is `membership`; `None` means the app is invisible to it.
///
/// Memberships only count for members: only they can be given one, and a
/// member promoted to admin keeps its rows but is an implicit `editor` like
/// every admin (its memberships apply again if it is demoted).
pub fn effective_app_role(user: &User, membership: Option<AppRole>) -> Option<AppRole> {
    if !user.active {
        return None;
    }
    match user.instance_role {
        InstanceRole::Owner => Some(AppRole::AppAdmin),
        InstanceRole::Admin => Some(AppRole::Editor),
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
        None if action == Action::ManageOwners => caller.instance_role == InstanceRole::Owner,
        None => matches!(
            caller.instance_role,
            InstanceRole::Owner | InstanceRole::Admin
        ),
        Some(least) => app_role.is_some_and(|role| role >= least),
    }
}

/// Whether `caller` may change the account `target` into `new_role` (if
/// given): it needs [`Action::ManageUsers`], and [`Action::ManageOwners`] if
/// the target is an owner or would become one. `Err` names the missing
/// action. (Keeping at least one active owner is the store's rule.)
pub fn may_change_user(
    caller: &User,
    target: &User,
    new_role: Option<InstanceRole>,
) -> Result<(), Action> {
    if !can(caller, Action::ManageUsers, None) {
        return Err(Action::ManageUsers);
    }
    let touches_an_owner =
        target.instance_role == InstanceRole::Owner || new_role == Some(InstanceRole::Owner);
    if touches_an_owner && !can(caller, Action::ManageOwners, None) {
        return Err(Action::ManageOwners);
    }
    Ok(())
}

/// The instance-wide permissions of `user`, as `GET /auth/me` lists them.
pub fn instance_permissions(user: &User) -> Vec<&'static str> {
    [
        Action::CreateApp,
        Action::ManageUsers,
        Action::ManageOwners,
        Action::ReadAudit,
    ]
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
            (&owner, None, ManageMembers, true),
            (&admin, None, Deploy, true),
            (&admin, None, ManageDomains, true),
            (&admin, None, CreateApp, true),
            (&admin, None, UpdateApp, false),
            (&admin, None, DeleteApp, false),
            (&admin, None, ManageMembers, false),
            (&admin, Some(AppRole::AppAdmin), ManageMembers, false),
            (&member, None, ReadApp, false),
            (&member, None, CreateApp, false),
            (&member, Some(AppRole::Viewer), ReadApp, true),
            (&member, Some(AppRole::Viewer), Deploy, false),
            (&member, Some(AppRole::Editor), Deploy, true),
            (&member, Some(AppRole::Editor), ManageDomains, true),
            (&member, Some(AppRole::Viewer), ManageFiles, false),
            (&member, Some(AppRole::Editor), ManageFiles, true),
            (&member, Some(AppRole::Viewer), ManageConfig, false),
            (&member, Some(AppRole::Editor), ManageConfig, true),
            (&member, Some(AppRole::Viewer), ManageSchedules, false),
            (&member, Some(AppRole::Editor), ManageSchedules, true),
            (&member, Some(AppRole::Editor), DeleteApp, false),
            (&member, Some(AppRole::Editor), ManageMembers, false),
            (&member, Some(AppRole::AppAdmin), DeleteApp, true),
            (&member, Some(AppRole::AppAdmin), ManageMembers, true),
            (&member, Some(AppRole::AppAdmin), ManageUsers, false),
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
            vec![
                "app.create",
                "instance.manage_users",
                "instance.manage_owners",
                "instance.read_audit"
            ]
        );
        assert_eq!(
            instance_permissions(&admin),
            vec!["app.create", "instance.manage_users", "instance.read_audit"]
        );
    }

    #[test]
    fn my_role_rules() {
        let owner = user(InstanceRole::Owner);
        let admin = user(InstanceRole::Admin);
        let member = user(InstanceRole::Member);
        assert_eq!(effective_app_role(&owner, None), Some(AppRole::AppAdmin));
        assert_eq!(
            effective_app_role(&owner, Some(AppRole::Viewer)),
            Some(AppRole::AppAdmin)
        );
        assert_eq!(effective_app_role(&admin, None), Some(AppRole::Editor));
        assert_eq!(
            effective_app_role(&admin, Some(AppRole::AppAdmin)),
            Some(AppRole::Editor)
        );
        assert_eq!(effective_app_role(&member, None), None);
        for role in AppRole::ALL {
            assert_eq!(effective_app_role(&member, Some(*role)), Some(*role));
        }
    }

    #[test]
    fn only_owners_touch_owners() {
        let owner = user(InstanceRole::Owner);
        let admin = user(InstanceRole::Admin);
        let member = user(InstanceRole::Member);
        assert_eq!(
            may_change_user(&admin, &owner, None),
            Err(Action::ManageOwners)
        );
        assert_eq!(
            may_change_user(&admin, &member, Some(InstanceRole::Owner)),
            Err(Action::ManageOwners)
        );
        assert_eq!(
            may_change_user(&admin, &member, Some(InstanceRole::Admin)),
            Ok(())
        );
        assert_eq!(
            may_change_user(&owner, &admin, Some(InstanceRole::Owner)),
            Ok(())
        );
        assert_eq!(
            may_change_user(&member, &member, Some(InstanceRole::Admin)),
            Err(Action::ManageUsers)
        );
    }
}
