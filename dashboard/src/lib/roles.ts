/**
 * What each role sees and may do in the dashboard. Pure functions, so the
 * rules are unit-tested in one place; components only ask.
 *
 * The server is the authority (it answers 403/404); this module only decides
 * which controls are offered, so nobody is shown a button that must fail.
 * It mirrors `crates/manager-core/src/api/policy.rs`.
 */
import type { AppMember, AppRole, InstanceRole, User } from './api';

export type AppTab = 'scripts' | 'logs' | 'domains' | 'members' | 'settings';

/** Every tab of the app page, in the order the dashboard shows them. */
export const APP_TABS: readonly AppTab[] = ['scripts', 'logs', 'domains', 'members', 'settings'];

export const TAB_LABELS: Record<AppTab, string> = {
	scripts: 'Scripts',
	logs: 'Logs',
	domains: 'Domains',
	members: 'Members',
	settings: 'Settings'
};

const APP_ROLE_RANK: Record<AppRole, number> = { viewer: 0, editor: 1, app_admin: 2 };

/** Whether `role` is at least `least`. */
export function atLeast(role: AppRole, least: AppRole): boolean {
	return APP_ROLE_RANK[role] >= APP_ROLE_RANK[least];
}

/** What a caller with `my_role` may do on one app. */
export interface AppAbilities {
	/** Deploy a new version (editor and above). */
	deploy: boolean;
	/** Make an earlier version active (editor and above). */
	rollback: boolean;
	/** Delete a script (editor and above). */
	deleteScript: boolean;
	/** Add and remove domains (editor and above). */
	manageDomains: boolean;
	/** List, add, change and remove members (app admins only). */
	manageMembers: boolean;
	/** Set and remove plain variables (editor and above). */
	manageVariables: boolean;
	/** Set, replace and remove secrets (editor and above); nobody reads a value back. */
	manageSecrets: boolean;
	/** Change the outbound-HTTP allow-list (editor and above). */
	manageAllowlist: boolean;
	/** Create, pause, change and delete schedules (editor and above). */
	manageSchedules: boolean;
	/** Upload and delete static files (editor and above). */
	manageFiles: boolean;
	/** Delete keys of the app's key-value store (editor and above). */
	manageKv: boolean;
	/** Rename the app, change its settings (app admins only). */
	updateApp: boolean;
	/** Change the app's limits: fuel, deadline, memory, output (app admins only). */
	updateLimits: boolean;
	/** Delete the app (app admins only). */
	deleteApp: boolean;
}

export function appAbilities(role: AppRole): AppAbilities {
	const editor = atLeast(role, 'editor');
	const appAdmin = role === 'app_admin';
	return {
		deploy: editor,
		rollback: editor,
		deleteScript: editor,
		manageDomains: editor,
		manageMembers: appAdmin,
		manageVariables: editor,
		manageSecrets: editor,
		manageAllowlist: editor,
		manageSchedules: editor,
		manageFiles: editor,
		manageKv: editor,
		updateApp: appAdmin,
		updateLimits: appAdmin,
		deleteApp: appAdmin
	};
}

/**
 * The tabs of the app page for `my_role`, in order. Members is there only
 * for `app_admin` (owners, and members with an explicit `app_admin`
 * membership; instance admins are implicit editors and do not see it).
 */
export function appTabs(role: AppRole): AppTab[] {
	return APP_TABS.filter((tab) => tab !== 'members' || appAbilities(role).manageMembers);
}

/** The tab to show for a requested name: the first tab when it is unknown or not allowed. */
export function pickTab(role: AppRole, requested: string | null): AppTab {
	const tabs = appTabs(role);
	return tabs.find((tab) => tab === requested) ?? 'scripts';
}

/** Instance permission names, as `GET /auth/me` lists them. */
export const PERMISSION_CREATE_APP = 'app.create';
export const PERMISSION_MANAGE_USERS = 'instance.manage_users';
export const PERMISSION_MANAGE_OWNERS = 'instance.manage_owners';

/** What a caller may do on the whole instance, from its `permissions`. */
export function instanceAbilities(permissions: readonly string[]) {
	return {
		createApp: permissions.includes(PERMISSION_CREATE_APP),
		/** Browse the user directory and manage users (Admin → Users). */
		manageUsers: permissions.includes(PERMISSION_MANAGE_USERS),
		/** Make, change or deactivate owners. */
		manageOwners: permissions.includes(PERMISSION_MANAGE_OWNERS)
	};
}

/**
 * How an app admin adds a member: callers who may browse the user directory
 * pick from it; the others type an exact username or e-mail, resolved by the
 * narrow lookup.
 */
export function memberAddMode(permissions: readonly string[]): 'directory' | 'lookup' {
	return instanceAbilities(permissions).manageUsers ? 'directory' : 'lookup';
}

/** The users the directory dropdown offers: active `member`s not already on the app. */
export function addableFromDirectory(users: readonly User[], members: readonly AppMember[]): User[] {
	const onApp = new Set(members.map((member) => member.user_id));
	return users.filter((user) => user.active && user.instance_role === 'member' && !onApp.has(user.id));
}

/** The role changes offered on a member's row, with their menu labels. */
export function memberRoleChanges(current: AppRole): { role: AppRole; label: string }[] {
	return GRANTABLE_APP_ROLES.filter((role) => role !== current).map((role) => ({
		role,
		label: `${atLeast(role, current) ? 'Promote' : 'Demote'} to ${APP_ROLE_LABELS[role]}`
	}));
}

/** The instance roles a caller may give or take on `target` (none if it may not touch it). */
export function instanceRoleChoices(permissions: readonly string[], target: User): InstanceRole[] {
	const abilities = instanceAbilities(permissions);
	if (!abilities.manageUsers) return [];
	if (target.instance_role === 'owner' && !abilities.manageOwners) return [];
	const all: InstanceRole[] = ['member', 'admin', 'owner'];
	return all.filter((role) => abilities.manageOwners || role !== 'owner');
}

/** Whether a caller may deactivate or reactivate `target`. */
export function mayToggleActive(permissions: readonly string[], callerId: number, target: User): boolean {
	const abilities = instanceAbilities(permissions);
	if (!abilities.manageUsers || target.id === callerId) return false;
	return target.instance_role !== 'owner' || abilities.manageOwners;
}

/** The app roles an app admin may grant, least powerful first. */
export const GRANTABLE_APP_ROLES: readonly AppRole[] = ['viewer', 'editor', 'app_admin'];

export const APP_ROLE_LABELS: Record<AppRole, string> = {
	viewer: 'viewer',
	editor: 'editor',
	app_admin: 'app admin'
};

export const INSTANCE_ROLE_LABELS: Record<InstanceRole, string> = {
	member: 'member',
	admin: 'admin',
	owner: 'owner'
};
