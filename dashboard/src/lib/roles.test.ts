import { describe, expect, it } from 'vitest';
import { appAbilities, appTabs, atLeast, instanceAbilities, pickTab } from './roles';

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
			expect(appAbilities(role)).toEqual({
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
	it('roles are ordered viewer < editor < app_admin', () => {
		expect(atLeast('app_admin', 'editor')).toBe(true);
		expect(atLeast('editor', 'editor')).toBe(true);
		expect(atLeast('viewer', 'editor')).toBe(false);
	});
});

describe('instance abilities, from /auth/me permissions', () => {
	it('the owner may create apps and manage users', () => {
		expect(instanceAbilities(['app.create', 'instance.manage_users'])).toEqual({
			createApp: true,
			manageUsers: true
		});
	});
	it('a member may do neither', () => {
		expect(instanceAbilities([])).toEqual({ createApp: false, manageUsers: false });
	});
});
