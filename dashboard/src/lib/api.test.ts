import { describe, expect, it } from 'vitest';
import { ApiError, createApi, errorFromBody, isUnauthenticated, query, type EventSourceLike } from './api';

interface Call {
	url: string;
	method: string;
	headers: Record<string, string>;
	body: string | undefined;
	credentials: RequestCredentials | undefined;
}

/** A fetch that records each call and answers from `answers`, in order. */
function mockFetch(...answers: Array<{ status: number; body?: unknown; headers?: Record<string, string> }>) {
	const calls: Call[] = [];
	const fetchImpl = async (input: RequestInfo | URL, init?: RequestInit) => {
		const headers = new Headers(init?.headers);
		calls.push({
			url: String(input),
			method: init?.method ?? 'GET',
			headers: Object.fromEntries(headers.entries()),
			body: init?.body === undefined ? undefined : String(init.body),
			credentials: init?.credentials
		});
		const answer = answers.shift();
		if (!answer) throw new TypeError('Failed to fetch');
		const text =
			answer.body === undefined ? '' : typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
		return new Response(answer.status === 204 ? null : text, { status: answer.status, headers: answer.headers });
	};
	return { calls, fetchImpl: fetchImpl as typeof fetch };
}

const user = {
	id: 1,
	username: 'owner',
	email: 'owner@localhost',
	instance_role: 'owner',
	active: true,
	created_at: '2026-01-01T00:00:00Z'
};

describe('the API client', () => {
	it('logs in, then sends the CSRF token on state-changing requests only', async () => {
		const { calls, fetchImpl } = mockFetch(
			{ status: 200, body: { csrf_token: 'csrf_abc', user, instance_role: 'owner', permissions: [], session: {} } },
			{ status: 200, body: [] },
			{ status: 201, body: { id: 1, slug: 'shop', name: 'shop', settings: {}, created_at: '', my_role: 'app_admin' } }
		);
		const api = createApi(fetchImpl);
		await api.auth.login('owner', 'secret');
		expect(calls[0]).toMatchObject({
			url: '/api/v1/auth/login',
			method: 'POST',
			body: JSON.stringify({ login: 'owner', password: 'secret' }),
			credentials: 'same-origin'
		});
		await api.apps.list();
		expect(calls[1]?.headers['x-csrf-token']).toBeUndefined();
		const app = await api.apps.create({ slug: 'shop' });
		expect(app.my_role).toBe('app_admin');
		expect(calls[2]?.headers['x-csrf-token']).toBe('csrf_abc');
		expect(calls[2]?.headers['content-type']).toBe('application/json');
	});

	it('takes the CSRF token from /auth/me after a page reload', async () => {
		const { calls, fetchImpl } = mockFetch(
			{ status: 200, body: { user, instance_role: 'owner', permissions: [], csrf_token: 'csrf_me', authenticated_by: 'session' } },
			{ status: 204 }
		);
		const api = createApi(fetchImpl);
		await api.auth.me();
		await api.domains.remove('shop', 'shop.example.com');
		expect(calls[1]).toMatchObject({
			url: '/api/v1/apps/shop/domains/shop.example.com',
			method: 'DELETE'
		});
		expect(calls[1]?.headers['x-csrf-token']).toBe('csrf_me');
	});

	it('builds the script, version and rollback paths, escaping names', async () => {
		const { calls, fetchImpl } = mockFetch(
			{ status: 201, body: { version: 2 } },
			{ status: 200, body: [] },
			{ status: 200, body: { source: 'x' } },
			{ status: 200, body: { version: 1 } }
		);
		const api = createApi(fetchImpl);
		await api.scripts.deploy('shop', 'hello', '"hi"');
		await api.scripts.versions('shop', 'a/b');
		await api.scripts.version('shop', 'hello', 1);
		await api.scripts.rollback('shop', 'hello', 1);
		expect(calls.map((call) => `${call.method} ${call.url}`)).toEqual([
			'PUT /api/v1/apps/shop/scripts/hello',
			'GET /api/v1/apps/shop/scripts/a%2Fb/versions',
			'GET /api/v1/apps/shop/scripts/hello/versions/1',
			'POST /api/v1/apps/shop/scripts/hello/rollback'
		]);
		expect(calls[0]?.body).toBe(JSON.stringify({ source: '"hi"' }));
		expect(calls[3]?.body).toBe(JSON.stringify({ version: 1 }));
	});

	it('turns a compile error into an ApiError with line and column', async () => {
		const { fetchImpl } = mockFetch({
			status: 422,
			body: {
				error: {
					code: 'compile_error',
					message: "the script does not compile: Unexpected ';'",
					detail: "Unexpected ';'",
					line: 1,
					column: 9
				}
			}
		});
		const api = createApi(fetchImpl);
		const error = await api.scripts.deploy('shop', 'hello', 'let x = ;').catch((caught) => caught);
		expect(error).toBeInstanceOf(ApiError);
		expect(error).toMatchObject({
			status: 422,
			code: 'compile_error',
			message: "the script does not compile: Unexpected ';'",
			detail: "Unexpected ';'",
			line: 1,
			column: 9
		});
	});

	it('keeps the field of an invalid input and the permission of a forbidden', () => {
		expect(
			errorFromBody(422, JSON.stringify({ error: { code: 'invalid_input', message: 'invalid slug', field: 'slug' } }))
		).toMatchObject({ status: 422, code: 'invalid_input', field: 'slug', line: undefined });
		expect(
			errorFromBody(403, JSON.stringify({ error: { code: 'forbidden', message: 'no', permission: 'app.delete' } }))
		).toMatchObject({ status: 403, permission: 'app.delete' });
	});

	it('answers that are not the API format still become ApiErrors', () => {
		const error = errorFromBody(502, 'Bad Gateway');
		expect(error).toMatchObject({ status: 502, code: 'http_502', message: 'Bad Gateway' });
		expect(errorFromBody(500, '')).toMatchObject({ code: 'http_500' });
	});

	it('a network failure is an ApiError with status 0', async () => {
		const { fetchImpl } = mockFetch();
		const error = await createApi(fetchImpl).apps.list().catch((caught) => caught);
		expect(error).toMatchObject({ status: 0, code: 'network_error' });
	});

	it('recognises "log in first"', async () => {
		const { fetchImpl } = mockFetch({
			status: 401,
			body: { error: { code: 'unauthenticated', message: 'authentication required' } }
		});
		const error = await createApi(fetchImpl).auth.me().catch((caught) => caught);
		expect(isUnauthenticated(error)).toBe(true);
		expect(isUnauthenticated(new Error('x'))).toBe(false);
	});

	it('tells the app when a session is lost mid-page, but not when auth.me asks', async () => {
		const unauthenticated = { status: 401, body: { error: { code: 'unauthenticated', message: 'x' } } };
		const wrongPassword = { status: 401, body: { error: { code: 'invalid_credentials', message: 'x' } } };
		const { fetchImpl } = mockFetch(unauthenticated, wrongPassword, unauthenticated);
		const api = createApi(fetchImpl);
		let lost = 0;
		api.onSessionLost(() => lost++);
		await api.auth.me().catch(() => undefined);
		await api.auth.login('x', 'y').catch(() => undefined);
		expect(lost).toBe(0);
		await api.apps.list().catch(() => undefined);
		expect(lost).toBe(1);
	});

	it('forgets the CSRF token on log-out', async () => {
		const { calls, fetchImpl } = mockFetch(
			{ status: 200, body: { csrf_token: 'c1', user, instance_role: 'owner', permissions: [], session: {} } },
			{ status: 204 },
			{ status: 401, body: { error: { code: 'unauthenticated', message: 'x' } } }
		);
		const api = createApi(fetchImpl);
		await api.auth.login('owner', 'pw');
		await api.auth.logout();
		expect(calls[1]?.headers['x-csrf-token']).toBe('c1');
		await api.apps.create({ slug: 'x' }).catch(() => undefined);
		expect(calls[2]?.headers['x-csrf-token']).toBeUndefined();
	});

	it('calls a script endpoint without credentials and reports what came back', async () => {
		const { calls, fetchImpl } = mockFetch({
			status: 201,
			body: '{"id":42}',
			headers: { 'content-type': 'application/json', 'x-request-id': 'r1' }
		});
		const api = createApi(fetchImpl);
		const response = await api.endpoints.call('shop', 'orders', {
			method: 'post',
			pathSuffix: '42?x=1',
			headers: [
				['content-type', 'application/json'],
				['', 'ignored']
			],
			body: '{}'
		});
		expect(calls[0]).toMatchObject({
			url: '/shop/orders/42?x=1',
			method: 'POST',
			body: '{}',
			credentials: 'omit'
		});
		expect(calls[0]?.headers).toEqual({ 'content-type': 'application/json' });
		expect(response.status).toBe(201);
		expect(response.body).toBe('{"id":42}');
		expect(response.headers).toContainEqual(['x-request-id', 'r1']);
	});

	it('the narrow lookup sends the exact query and maps "not addable" to an ApiError', async () => {
		const { calls, fetchImpl } = mockFetch({
			status: 404,
			body: { error: { code: 'no_addable_user', message: 'no user with that exact name can be added' } }
		});
		const error = await createApi(fetchImpl)
			.appMembers.lookup('shop', 'carol')
			.catch((caught) => caught);
		expect(calls[0]).toMatchObject({ url: '/api/v1/apps/shop/members/lookup', method: 'POST' });
		expect(calls[0]?.body).toBe(JSON.stringify({ query: 'carol' }));
		expect(error).toMatchObject({ status: 404, code: 'no_addable_user' });
	});

	it('never sends a body with GET', async () => {
		const { calls, fetchImpl } = mockFetch({ status: 200, body: 'hi' });
		await createApi(fetchImpl).endpoints.call('shop', 'hello', {
			method: 'GET',
			pathSuffix: '',
			headers: [],
			body: 'ignored'
		});
		expect(calls[0]).toMatchObject({ url: '/shop/hello', body: undefined });
	});

	it('members and the user directory are shaped like domains', async () => {
		const { calls, fetchImpl } = mockFetch(
			{ status: 200, body: [] },
			{ status: 201, body: {} },
			{ status: 200, body: {} },
			{ status: 204 },
			{ status: 200, body: [] }
		);
		const api = createApi(fetchImpl);
		await api.appMembers.list('shop');
		await api.appMembers.add('shop', 'bob', 'editor');
		await api.appMembers.changeRole('shop', 7, 'app_admin');
		await api.appMembers.remove('shop', 7);
		await api.admin.users.list();
		expect(calls[1]?.body).toBe(JSON.stringify({ user: 'bob', role: 'editor' }));
		expect(calls.map((call) => `${call.method} ${call.url}`)).toEqual([
			'GET /api/v1/apps/shop/members',
			'POST /api/v1/apps/shop/members',
			'PATCH /api/v1/apps/shop/members/7',
			'DELETE /api/v1/apps/shop/members/7',
			'GET /api/v1/admin/users'
		]);
	});

	it('lists invocations with only the filters that are set, and pages with before', async () => {
		const { calls, fetchImpl } = mockFetch(
			{ status: 200, body: { items: [{ id: 9, status: 'error' }], next_before: 9 } },
			{ status: 200, body: { items: [], next_before: null } },
			{ status: 200, body: { id: 9 } }
		);
		const api = createApi(fetchImpl);
		const first = await api.invocations.list('shop', { script: 'hello', status: 'error', since: '', limit: 50 });
		expect(first.next_before).toBe(9);
		await api.invocations.list('shop', { before: 9 });
		await api.invocations.get('shop', 9);
		expect(calls.map((call) => `${call.method} ${call.url}`)).toEqual([
			'GET /api/v1/apps/shop/invocations?script=hello&status=error&limit=50',
			'GET /api/v1/apps/shop/invocations?before=9',
			'GET /api/v1/apps/shop/invocations/9'
		]);
	});

	it('asks for chart statistics by window and script', async () => {
		const stats = { bucket_seconds: 60, series: [{ script: 'hello', buckets: [] }] };
		const { calls, fetchImpl } = mockFetch({ status: 200, body: stats }, { status: 200, body: stats });
		const api = createApi(fetchImpl);
		expect(await api.invocations.stats('shop', '24h')).toEqual(stats);
		await api.invocations.stats('shop', '1h', 'hello');
		expect(calls.map((call) => call.url)).toEqual([
			'/api/v1/apps/shop/invocations/stats?window=24h',
			'/api/v1/apps/shop/invocations/stats?window=1h&script=hello'
		]);
	});

	it('follows the live tail through an EventSource and stops it', () => {
		const listeners: Record<string, (event: MessageEvent) => void> = {};
		let closed = false;
		let opened = '';
		const source: { readyState: number } & Omit<EventSourceLike, 'readyState'> = {
			readyState: 0,
			addEventListener: (type, listener) => (listeners[type] = listener),
			close: () => (closed = true),
			onerror: null,
			onopen: null
		};
		const api = createApi(undefined, '', (url) => {
			opened = url;
			return source;
		});
		const seen: unknown[] = [];
		const statuses: string[] = [];
		const stop = api.invocations.follow('shop', 'hello', (item) => seen.push(item), (up) => statuses.push(up));
		expect(opened).toBe('/api/v1/apps/shop/invocations/stream?script=hello');
		source.onopen?.(new Event('open'));
		listeners.invocation?.(new MessageEvent('invocation', { data: '{"id":1,"status":"ok"}' }));
		listeners.invocation?.(new MessageEvent('invocation', { data: 'not json' }));
		source.onerror?.(new Event('error'));
		source.readyState = 2;
		source.onerror?.(new Event('error'));
		expect(seen).toEqual([{ id: 1, status: 'ok' }]);
		expect(statuses).toEqual(['open', 'reconnecting', 'closed']);
		stop();
		expect(closed).toBe(true);
	});

	it('variables, secrets and the allow-list: set with PUT, never read a secret back', async () => {
		const { calls, fetchImpl } = mockFetch(
			{ status: 200, body: { items: [{ name: 'GREETING', value: 'hi', updated_at: '' }] } },
			{ status: 200, body: { name: 'GREETING', value: 'hello', updated_at: '' } },
			{ status: 204 },
			{ status: 200, body: { items: [{ name: 'API_KEY', updated_at: '' }] } },
			{ status: 200, body: { name: 'API_KEY', updated_at: '' } },
			{ status: 204 },
			{ status: 200, body: { hosts: ['api.example.com'] } },
			{ status: 200, body: { hosts: ['api.example.com', '*.example.org'] } }
		);
		const api = createApi(fetchImpl);
		expect(await api.vars.list('shop')).toEqual([{ name: 'GREETING', value: 'hi', updated_at: '' }]);
		await api.vars.set('shop', 'GREETING', 'hello');
		await api.vars.remove('shop', 'GREETING');
		const secrets = await api.secrets.list('shop');
		expect(secrets[0]).not.toHaveProperty('value');
		await api.secrets.set('shop', 'API_KEY', 's3cr3t');
		await api.secrets.remove('shop', 'API_KEY');
		expect(await api.allowlist.get('shop')).toEqual(['api.example.com']);
		await api.allowlist.set('shop', ['api.example.com', '*.example.org']);
		expect(calls.map((call) => `${call.method} ${call.url}`)).toEqual([
			'GET /api/v1/apps/shop/vars',
			'PUT /api/v1/apps/shop/vars/GREETING',
			'DELETE /api/v1/apps/shop/vars/GREETING',
			'GET /api/v1/apps/shop/secrets',
			'PUT /api/v1/apps/shop/secrets/API_KEY',
			'DELETE /api/v1/apps/shop/secrets/API_KEY',
			'GET /api/v1/apps/shop/http-allowlist',
			'PUT /api/v1/apps/shop/http-allowlist'
		]);
		expect(calls[1]?.body).toBe(JSON.stringify({ value: 'hello' }));
		expect(calls[4]?.body).toBe(JSON.stringify({ value: 's3cr3t' }));
		expect(calls[7]?.body).toBe(JSON.stringify({ hosts: ['api.example.com', '*.example.org'] }));
	});

	it('schedules: create, pause and delete; lists accept a bare array too', async () => {
		const schedule = { id: 3, script: 'hello', cron: '*/5 * * * *', timezone: 'UTC', payload: null, enabled: true, next_run_at: null };
		const { calls, fetchImpl } = mockFetch(
			{ status: 200, body: [schedule] },
			{ status: 201, body: schedule },
			{ status: 200, body: { ...schedule, enabled: false } },
			{ status: 204 }
		);
		const api = createApi(fetchImpl);
		expect(await api.schedules.list('shop')).toEqual([schedule]);
		await api.schedules.create('shop', { script: 'hello', cron: '*/5 * * * *', timezone: 'UTC' });
		expect((await api.schedules.update('shop', 3, { enabled: false })).enabled).toBe(false);
		await api.schedules.remove('shop', 3);
		expect(calls.map((call) => `${call.method} ${call.url}`)).toEqual([
			'GET /api/v1/apps/shop/schedules',
			'POST /api/v1/apps/shop/schedules',
			'PATCH /api/v1/apps/shop/schedules/3',
			'DELETE /api/v1/apps/shop/schedules/3'
		]);
		expect(calls[2]?.body).toBe(JSON.stringify({ enabled: false }));
	});

	it('files: uploads send the raw bytes with their type and the CSRF token, paths keep their slashes', async () => {
		const { calls, fetchImpl } = mockFetch(
			{ status: 200, body: { user, instance_role: 'owner', permissions: [], csrf_token: 'csrf_f', authenticated_by: 'session' } },
			{
				status: 200,
				body: {
					files: [{ path: 'a.txt', size: 1, etag: '"e"', modified: '' }],
					usage: { files: 1, bytes: 1 },
					quota: { max_file_bytes: 10, max_total_bytes: 100, max_files: 5 }
				}
			},
			{ status: 201, body: { path: 'css/site main.css', size: 5, etag: 'e', modified: '' } },
			{ status: 204 }
		);
		const api = createApi(fetchImpl);
		await api.auth.me();
		const listed = await api.files.list('shop');
		expect(listed.files.map((file) => file.path)).toEqual(['a.txt']);
		expect(listed.usage).toEqual({ files: 1, bytes: 1 });
		await api.files.upload('shop', '/css/site main.css', 'body{}', 'text/css');
		await api.files.remove('shop', 'css/site main.css');
		expect(calls.slice(1).map((call) => `${call.method} ${call.url}`)).toEqual([
			'GET /api/v1/apps/shop/files',
			'PUT /api/v1/apps/shop/files/css/site%20main.css',
			'DELETE /api/v1/apps/shop/files/css/site%20main.css'
		]);
		expect(calls[2]?.body).toBe('body{}');
		expect(calls[2]?.headers['content-type']).toBe('text/css');
		expect(calls[2]?.headers['x-csrf-token']).toBe('csrf_f');
	});

	it('builds query strings from the set values only', () => {
		expect(query({})).toBe('');
		expect(query({ a: 'x y', b: undefined, c: '', d: 0 })).toBe('?a=x+y&d=0');
	});

	it('browses the key-value store by prefix and pages with next', async () => {
		const { calls, fetchImpl } = mockFetch(
			{ status: 200, body: { items: [{ key: 'cart/1', value: { n: 1 }, expires_at: null }], next: 'cart/1' } },
			{ status: 204 },
			{ status: 200, body: { keys: 3, bytes: 120 } }
		);
		const api = createApi(fetchImpl);
		const page = await api.kv.list('shop', { prefix: 'cart/', after: '', limit: 20 });
		expect(page.next).toBe('cart/1');
		await api.kv.remove('shop', 'cart/1');
		expect(await api.kv.usage('shop')).toEqual({ keys: 3, bytes: 120 });
		expect(calls.map((call) => `${call.method} ${call.url}`)).toEqual([
			'GET /api/v1/apps/shop/kv?prefix=cart%2F&limit=20',
			'DELETE /api/v1/apps/shop/kv/cart%2F1',
			'GET /api/v1/apps/shop/kv-usage'
		]);
	});
});
