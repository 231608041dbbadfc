import { describe, expect, it } from 'vitest';
import type { AppMember, User } from './api';
import {
	addableFromDirectory,
	appAbilities,
	appTabs,
	atLeast,
	instanceAbilities,
	instanceRoleChoices,
	mayToggleActive,
	memberAddMode,
	memberRoleChanges,
	pickTab
} from './roles';

const OWNER = ['app.create', 'instance.manage_users', 'instance.manage_owners', 'instance.read_audit'];
const ADMIN = ['app.create', 'instance.manage_users', 'instance.read_audit'];
const MEMBER: string[] = [];

function user(id: number, instance_role: User['instance_role'], active = true): User {
	return { id, username: `u${id}`, email: `u${id}@x`, instance_role, active, created_at: '' };
}
function member(user_id: number): AppMember {
	return {
		user_id,
		username: `u${user_id}`,
		email: '',
		instance_role: 'member',
		app_role: 'viewer',
		joined_at: '',
		active: true
	};
}

describe('the tabs of an app, by my_role', () => {
	it('app admins see all five tabs in order, Members between Domains and Settings', () => {
		expect(appTabs('app_admin')).toEqual(['scripts', 'logs', 'domains', 'members', 'settings']);
	});
	it('editors (including instance admins, who are implicit editors) do not see Members', () => {
		expect(appTabs('editor')).toEqual(['scripts', 'logs', 'domains', 'settings']);
	});
	it('viewers do not see Members', () => {
		expect(appTabs('viewer')).toEqual(['scripts', 'logs', 'domains', 'settings']);
	});
	it('a requested tab the role may not open falls back to Scripts', () => {
		expect(pickTab('editor', 'members')).toBe('scripts');
		expect(pickTab('app_admin', 'members')).toBe('members');
		expect(pickTab('viewer', 'nonsense')).toBe('scripts');
		expect(pickTab('viewer', null)).toBe('scripts');
		expect(pickTab('viewer', 'settings')).toBe('settings');
	});
});

describe('the actions of an app, by my_role', () => {
	// role, then: deploy, rollback, deleteScript, manageDomains, manageMembers, updateApp, deleteApp
	const table = [
		['viewer', false, false, false, false, false, false, false],
		['editor', true, true, true, true, false, false, false],
		['app_admin', true, true, true, true, true, true, true]
	] as const;
	for (const [role, deploy, rollback, deleteScript, manageDomains, manageMembers, updateApp, deleteApp] of table) {
		it(`${role}`, () => {
			expect(appAbilities(role)).toMatchObject({
				deploy,
				rollback,
				deleteScript,
				manageDomains,
				manageMembers,
				updateApp,
				deleteApp
			});
		});
	}
	// role, then: variables, secrets, allow-list, schedules, files, key-value, limits
	const settings = [
		['viewer', false, false, false, false, false, false, false],
		['editor', true, true, true, true, true, true, false],
		['app_admin', true, true, true, true, true, true, true]
	] as const;
	for (const [role, manageVariables, manageSecrets, manageAllowlist, manageSchedules, manageFiles, manageKv, updateLimits] of settings) {
		it(`${role}: variables, secrets, allow-list, schedules, files and limits`, () => {
			expect(appAbilities(role)).toMatchObject({
				manageVariables,
				manageSecrets,
				manageAllowlist,
				manageSchedules,
				manageFiles,
				manageKv,
				updateLimits
			});
		});
	}
	it('viewers may change nothing at all', () => {
		expect(Object.values(appAbilities('viewer')).every((allowed) => allowed === false)).toBe(true);
	});
	it('roles are ordered viewer < editor < app_admin', () => {
		expect(atLeast('app_admin', 'editor')).toBe(true);
		expect(atLeast('editor', 'editor')).toBe(true);
		expect(atLeast('viewer', 'editor')).toBe(false);
	});
});

describe('instance abilities, from /auth/me permissions', () => {
	it('the owner may create apps and manage users and owners', () => {
		expect(instanceAbilities(OWNER)).toEqual({ createApp: true, manageUsers: true, manageOwners: true });
	});
	it('an admin manages users but not owners', () => {
		expect(instanceAbilities(ADMIN)).toEqual({ createApp: true, manageUsers: true, manageOwners: false });
	});
	it('a member may do none of it', () => {
		expect(instanceAbilities(MEMBER)).toEqual({ createApp: false, manageUsers: false, manageOwners: false });
	});
});

describe('the Members tab', () => {
	it('callers who may browse the directory get a dropdown; other app admins type an exact name', () => {
		expect(memberAddMode(OWNER)).toBe('directory');
		expect(memberAddMode(ADMIN)).toBe('directory');
		expect(memberAddMode(MEMBER)).toBe('lookup');
	});
	it('the dropdown offers active members who are not on the app yet', () => {
		const users = [user(1, 'owner'), user(2, 'admin'), user(3, 'member'), user(4, 'member', false), user(5, 'member')];
		expect(addableFromDirectory(users, [member(5)]).map((found) => found.id)).toEqual([3]);
	});
	it('each row offers the other two roles, as promotions or demotions', () => {
		expect(memberRoleChanges('editor')).toEqual([
			{ role: 'viewer', label: 'Demote to viewer' },
			{ role: 'app_admin', label: 'Promote to app admin' }
		]);
		expect(memberRoleChanges('viewer').map((change) => change.label)).toEqual([
			'Promote to editor',
			'Promote to app admin'
		]);
	});
});

describe('Admin → Users', () => {
	it('admins may not touch owners nor make one; owners may', () => {
		expect(instanceRoleChoices(ADMIN, user(9, 'owner'))).toEqual([]);
		expect(instanceRoleChoices(ADMIN, user(9, 'member'))).toEqual(['member', 'admin']);
		expect(instanceRoleChoices(OWNER, user(9, 'member'))).toEqual(['member', 'admin', 'owner']);
		expect(instanceRoleChoices(MEMBER, user(9, 'member'))).toEqual([]);
	});
	it('nobody deactivates themselves; admins do not deactivate owners', () => {
		expect(mayToggleActive(OWNER, 1, user(1, 'owner'))).toBe(false);
		expect(mayToggleActive(OWNER, 1, user(2, 'owner'))).toBe(true);
		expect(mayToggleActive(ADMIN, 1, user(2, 'owner'))).toBe(false);
		expect(mayToggleActive(ADMIN, 1, user(2, 'member'))).toBe(true);
		expect(mayToggleActive(MEMBER, 1, user(2, 'member'))).toBe(false);
	});
});
