// Members and users, driven like people would: the owner sets up a team, an
// app admin who is a plain member manages it, an instance admin does not see
// Members. Against the real picloud binary with a fresh database.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, OWNER_PASSWORD, screenshot, startStack, watchConsole } from './harness.js';

let stack;
let browser;
let page;
let consoleWatch;

before(async () => {
	stack = await startStack();
	browser = await launchBrowser();
	const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
	page = await context.newPage();
	page.setDefaultTimeout(15_000);
	consoleWatch = watchConsole(page);
});

after(async () => {
	await browser?.close();
	await stack?.stop();
});

const dashboard = (path = '/') => `${stack.origin}/dashboard${path}`;
const passwordOf = (username) => (username === 'owner' ? OWNER_PASSWORD : `password-of-${username}`);

async function logInAs(username) {
	if (await page.getByRole('button', { name: 'Log out' }).isVisible()) {
		await page.getByRole('button', { name: 'Log out' }).click();
	}
	await page.goto(dashboard('/login'));
	await page.getByLabel('Username or e-mail').fill(username);
	await page.getByLabel('Password').fill(passwordOf(username));
	await page.getByRole('button', { name: 'Log in' }).click();
	await page.getByRole('heading', { name: 'Apps', level: 1 }).waitFor();
	assert.equal(await page.getByTestId('current-user').innerText(), username);
}

async function openApp(slug, tab) {
	await page.goto(dashboard(`/apps/${slug}`));
	await page.getByRole('tablist').waitFor();
	if (tab) await page.getByRole('tab', { name: tab }).click();
}

async function chooseFromMenu(rowLabel, item) {
	await page.getByRole('button', { name: `Actions for ${rowLabel}` }).click();
	await page.getByRole('menuitem', { name: item }).click();
}

test('as owner, create users in Admin → Users', async () => {
	await logInAs('owner');
	await page.getByRole('link', { name: 'Users' }).click();
	await page.getByRole('heading', { name: 'Users', level: 1 }).waitFor();
	for (const [username, role] of [
		['bob', 'member'],
		['carol', 'member'],
		['erin', 'member'],
		['dave', 'admin']
	]) {
		await page.getByLabel('Username').fill(username);
		await page.getByLabel('E-mail').fill(`${username}@example.com`);
		await page.getByLabel('Password (12 characters or more)').fill(passwordOf(username));
		await page.getByLabel('Instance role').selectOption(role);
		await page.getByRole('button', { name: 'Create user' }).click();
		await page.getByRole('status').filter({ hasText: `Created ${username} (${role}).` }).waitFor();
	}
	await page.getByTestId('user-dave').getByText('admin', { exact: true }).waitFor();
});

test('as owner, grant editor to bob through the dropdown and see the chip', async () => {
	await page.getByRole('link', { name: 'Apps' }).click();
	await page.getByLabel('Slug (in URLs)').fill('team');
	await page.getByRole('button', { name: 'Create app' }).click();
	await page.getByRole('heading', { name: 'team', level: 1 }).waitFor();
	await page.getByRole('tab', { name: 'Members' }).click();
	await page.getByText('No members yet.').waitFor();
	const userSelect = page.locator('select[name="member-user"]');
	await userSelect.locator('option', { hasText: 'erin' }).waitFor({ state: 'attached' });
	const options = await userSelect.locator('option').allInnerTexts();
	// Only active plain members are offered: not the owner, not the admin dave.
	assert.deepEqual(options.slice(1), ['bob (bob@example.com)', 'carol (carol@example.com)', 'erin (erin@example.com)']);
	await page.locator('select[name="member-user"]').selectOption({ label: 'bob (bob@example.com)' });
	await page.getByLabel('Role').selectOption('editor');
	await page.getByRole('button', { name: 'Add member' }).click();
	await page.getByRole('status').filter({ hasText: 'bob is now editor of team.' }).waitFor();
	await page.getByTestId('member-bob').locator('.chip.app.editor').waitFor();
	// bob is on the app now, so the dropdown no longer offers him.
	assert.equal(await page.locator('select[name="member-user"]').locator('option', { hasText: 'bob' }).count(), 0);
});

test('as owner, promote bob to app admin through his row menu', async () => {
	await chooseFromMenu('bob', 'Promote to app admin');
	await page.getByRole('status').filter({ hasText: 'bob is now app admin.' }).waitFor();
	await page.getByTestId('member-bob').locator('.chip.app.app_admin').waitFor();
	await screenshot(page, '10-members-owner');
});

test('as owner, deploy a script in team and make erin a viewer', async () => {
	await page.locator('select[name="member-user"]').selectOption({ label: 'erin (erin@example.com)' });
	await page.getByLabel('Role').selectOption('viewer');
	await page.getByRole('button', { name: 'Add member' }).click();
	await page.getByRole('status').filter({ hasText: 'erin is now viewer of team.' }).waitFor();
	await page.getByRole('tab', { name: 'Scripts' }).click();
	await page.getByLabel('New script').fill('hello');
	await page.getByRole('button', { name: 'Start editing' }).click();
	await page.getByRole('button', { name: 'Create and deploy' }).click();
	await page.getByRole('status').filter({ hasText: 'Deployed version 1 of hello' }).waitFor();
});

test('as erin (a viewer), everything is read-only', async () => {
	await logInAs('erin');
	await page.getByRole('row', { name: /team/ }).locator('.chip.app.viewer').waitFor();
	await openApp('team');
	assert.deepEqual(await page.getByRole('tab').allInnerTexts(), ['Scripts', 'Logs', 'Domains', 'Settings']);
	await page.getByRole('button', { name: /hello\s+v1 active/ }).click();
	await page.locator('.cm-content[contenteditable="false"]').waitFor();
	await page.getByText('You can read this script; editors and app admins deploy.').waitFor();
	assert.equal(await page.getByRole('button', { name: /Deploy/ }).count(), 0);
	assert.equal(await page.getByLabel('New script').count(), 0);
	assert.equal(await page.getByRole('button', { name: 'Actions for hello' }).count(), 0);
	// Viewers may still call the endpoint: it is public anyway.
	await page.getByRole('button', { name: 'Send request' }).click();
	await page.getByTestId('try-status').filter({ hasText: '200' }).waitFor();
	await page.getByRole('tab', { name: 'Domains' }).click();
	await page.getByText('Editors and app admins can add and remove domains.').waitFor();
	assert.equal(await page.getByLabel('Host name').count(), 0);
	await page.getByRole('tab', { name: 'Settings' }).click();
	await page.getByRole('heading', { name: 'Settings', exact: true }).waitFor();
	assert.equal(await page.getByRole('button', { name: 'Delete app…' }).count(), 0);
	assert.equal(await page.getByRole('button', { name: 'Save name' }).count(), 0);
	assert.equal(await page.getByRole('link', { name: 'Users' }).count(), 0);
	await screenshot(page, '13-viewer-settings');
});

test('as bob (a member with app_admin), see Members and add carol by exact username', async () => {
	await logInAs('bob');
	await page.getByRole('row', { name: /team/ }).locator('.chip.app.app_admin').waitFor();
	await openApp('team', 'Members');
	assert.deepEqual(await page.getByRole('tab').allInnerTexts(), ['Scripts', 'Logs', 'Domains', 'Members', 'Settings']);
	// No directory for bob: a typed exact name, and the reason why.
	assert.equal(await page.locator('select[name="member-user"]').count(), 0);
	await page.getByText('Only instance admins may browse the user directory').waitFor();
	await page.getByLabel('Exact username or e-mail').fill('car');
	await page.getByRole('button', { name: 'Add member' }).click();
	await page.locator('#member-add-error [role="alert"]').waitFor();
	await page.getByLabel('Exact username or e-mail').fill('carol');
	await page.getByLabel('Role').selectOption('viewer');
	await page.getByRole('button', { name: 'Add member' }).click();
	await page.getByRole('status').filter({ hasText: 'carol is now viewer of team.' }).waitFor();
	await page.getByTestId('member-carol').locator('.chip.app.viewer').waitFor();
	await screenshot(page, '11-members-app-admin');
});

test('as bob, remove carol through the confirmation modal', async () => {
	await chooseFromMenu('carol', 'Remove from app…');
	const dialog = page.getByRole('dialog', { name: 'Remove carol?' });
	await dialog.getByRole('button', { name: 'Remove member' }).click();
	await dialog.waitFor({ state: 'hidden' });
	await page.getByRole('status').filter({ hasText: 'carol was removed from team.' }).waitFor();
	assert.equal(await page.getByTestId('member-carol').count(), 0);
});

test('as dave (an instance admin), the Members tab is absent', async () => {
	await logInAs('dave');
	await page.getByRole('row', { name: /team/ }).locator('.chip.app.editor').waitFor();
	await openApp('team');
	assert.deepEqual(await page.getByRole('tab').allInnerTexts(), ['Scripts', 'Logs', 'Domains', 'Settings']);
	// Asking for it by URL does not show it either.
	await page.goto(dashboard('/apps/team?tab=members'));
	await page.getByRole('tab', { name: 'Scripts', selected: true }).waitFor();
	assert.equal(await page.getByRole('heading', { name: 'Members' }).count(), 0);
});

test('as owner, deactivate bob and see his rows greyed out', async () => {
	await logInAs('owner');
	await page.getByRole('link', { name: 'Users' }).click();
	await chooseFromMenu('bob', 'Deactivate…');
	const dialog = page.getByRole('dialog', { name: 'Deactivate bob?' });
	await dialog.getByRole('button', { name: 'Deactivate' }).click();
	await dialog.waitFor({ state: 'hidden' });
	await page.getByRole('status').filter({ hasText: 'bob is deactivated.' }).waitFor();
	assert.match((await page.getByTestId('user-bob').getAttribute('class')) ?? '', /inactive/);
	await screenshot(page, '12-users');
	await openApp('team', 'Members');
	await page.getByTestId('member-bob').getByText('(deactivated)').waitFor();
	assert.match((await page.getByTestId('member-bob').getAttribute('class')) ?? '', /inactive/);
});

test('bob can no longer log in', async () => {
	await page.getByRole('button', { name: 'Log out' }).click();
	await page.getByLabel('Username or e-mail').fill('bob');
	await page.getByLabel('Password').fill(passwordOf('bob'));
	await page.getByRole('button', { name: 'Log in' }).click();
	await page.getByRole('alert').waitFor();
	assert.match(page.url(), /\/dashboard\/login/);
});

test('no console errors on any page', () => {
	assert.deepEqual(consoleWatch.errors, []);
});
