/**
 * Who is logged in, shared by every page. Filled from `GET /auth/me` by the
 * root layout and by the log-in page; emptied on log-out or a 401.
 */
import { api, type Me } from './api';

export const session = $state<{ me: Me | null }>({ me: null });

/** Remembers in this browser that someone logged in, for the first-run hint. */
const LOGGED_IN_BEFORE = 'picloud.loggedInBefore';

export function markLoggedIn(me: Me) {
	session.me = me;
	try {
		localStorage.setItem(LOGGED_IN_BEFORE, '1');
	} catch {
		// Storage may be disabled; the hint is then simply shown again.
	}
}

export function loggedInBefore(): boolean {
	try {
		return localStorage.getItem(LOGGED_IN_BEFORE) === '1';
	} catch {
		return false;
	}
}

/**
 * Ends the session on the server, then runs `leave` (going to the log-in
 * page) before forgetting who was logged in, so no page is left open that
 * would ask the server who is there.
 */
export async function logout(leave: () => Promise<void>) {
	await api.auth.logout();
	await leave();
	session.me = null;
}
