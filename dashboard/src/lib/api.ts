/**
 * The one client of PiCloud's management API (`/api/v1`) and of script
 * endpoints (for the "try it" panel). Components never call `fetch`
 * themselves: they call a namespace here and get typed values back, or an
 * {@link ApiError} carrying the server's `code` and `message`.
 *
 * The shapes below follow `crates/manager-core/src/api/` and the OpenAPI
 * document at `/api/v1/openapi.json`.
 */

export type InstanceRole = 'member' | 'admin' | 'owner';
export type AppRole = 'viewer' | 'editor' | 'app_admin';
/** An RFC 3339 time, as the server writes it (`2026-11-30T05:55:11.747Z`). */
export type Timestamp = string;

export interface User {
	id: number;
	username: string;
	email: string;
	instance_role: InstanceRole;
	active: boolean;
	created_at: Timestamp;
}

/** `GET /auth/me`. */
export interface Me {
	user: User;
	instance_role: InstanceRole;
	/** Instance-wide permissions, such as `app.create`, `instance.manage_users`. */
	permissions: string[];
	/** Present for cookie sessions; echoed in `x-csrf-token`. */
	csrf_token?: string;
	authenticated_by: 'session' | 'api_token';
}

/** `POST /auth/login`. */
export interface LoginResult {
	session: { expires_at: Timestamp };
	csrf_token: string;
	user: User;
	instance_role: InstanceRole;
	permissions: string[];
}

export interface App {
	id: number;
	slug: string;
	name: string;
	settings: Record<string, unknown>;
	created_at: Timestamp;
	/** The caller's effective role on the app. */
	my_role: AppRole;
}

export interface ScriptSummary {
	id: number;
	app_id: number;
	name: string;
	created_at: Timestamp;
	active_version_number: number | null;
	latest_version_number: number | null;
	last_deployed_at: Timestamp | null;
}

export interface ScriptDetail extends ScriptSummary {
	/** The source of the active version. */
	active_source: string | null;
}

export interface VersionSummary {
	id: number;
	script_id: number;
	number: number;
	hash: string;
	author_id: number;
	author_username: string;
	created_at: Timestamp;
	active: boolean;
}

export interface ScriptVersion {
	id: number;
	script_id: number;
	number: number;
	source: string;
	hash: string;
	author_id: number;
	created_at: Timestamp;
}

/** The answer of a deploy or a rollback: the version that is now active. */
export interface ActivatedVersion {
	app: string;
	script: string;
	version: number;
	version_id: number;
	hash: string;
	author_id: number;
	created_at: Timestamp;
	active: boolean;
}

export interface Domain {
	id: number;
	app_id: number;
	host: string;
	created_at: Timestamp;
}

export interface ApiToken {
	id: number;
	user_id: number;
	name: string;
	created_at: Timestamp;
	last_used_at: Timestamp | null;
	revoked_at: Timestamp | null;
}

export interface CreatedToken extends ApiToken {
	/** The bearer secret; the server shows it in this answer only. */
	secret: string;
}

/** One explicit member of an app (`GET /apps/{app}/members`). */
export interface AppMember {
	user_id: number;
	username: string;
	email: string;
	instance_role: InstanceRole;
	app_role: AppRole;
	joined_at: Timestamp;
	/** Deactivated users keep their rows; the dashboard greys them out. */
	active: boolean;
}

/** The answer of the narrow lookup: all it reveals about a user. */
export interface AddableUser {
	user_id: number;
	username: string;
}

/** Who a member request names: a user id, a username or an e-mail address. */
export type UserReference = number | string;

/** A request sent to a script endpoint from the "try it" panel. */
export interface EndpointRequest {
	method: string;
	/** Appended to `/{app}/{script}`, such as `/42?x=1`; may be empty. */
	pathSuffix: string;
	headers: [string, string][];
	body: string;
}

export interface EndpointResponse {
	status: number;
	statusText: string;
	headers: [string, string][];
	body: string;
	durationMs: number;
}

/** One invocation record (`GET /apps/{app}/invocations`). */
export interface Invocation {
	id: number | string;
	request_id: string | null;
	script: string;
	version_id: number | null;
	/** What started it: `http`, `schedule`, `async`, … */
	trigger: string;
	/** `ok`, `error`, or an HTTP status code as the server wrote it. */
	status: string | number;
	error_code: string | null;
	error_message: string | null;
	started_at: Timestamp;
	started_at_ms: number;
	duration_ms: number;
	fuel_used: number | null;
	fuel_limit: number | null;
	/** Fuel used as a share of the limit, 0 to 1. */
	fuel_share: number | null;
	memory_bytes: number | null;
	memory_limit_bytes: number | null;
	/** Peak memory as a share of the limit, 0 to 1. */
	memory_share: number | null;
	cold_start: boolean;
	output: { level: string; text: string }[];
	output_truncated: boolean;
}

/** One page of invocations, newest first; pass `next_before` as `before` for the next. */
export interface InvocationPage {
	items: Invocation[];
	next_before: number | string | null;
}

/** The filters of the invocation list; every field is optional. */
export interface InvocationFilter {
	script?: string;
	/** `ok`, `error` or an HTTP status code. */
	status?: string;
	/** RFC 3339 or milliseconds since the epoch, as the server accepts it. */
	since?: string;
	until?: string;
	before?: number | string;
	limit?: number;
}

export type StatsWindow = '1h' | '24h' | '7d';

/** One time bucket of a script's invocations. */
export interface StatsBucket {
	/** The bucket's start: RFC 3339 or milliseconds since the epoch. */
	start: Timestamp | number;
	count: number;
	errors: number;
	avg_ms: number | null;
	p95_ms: number | null;
}

/** `GET /apps/{app}/invocations/stats`. */
export interface InvocationStats {
	bucket_seconds: number;
	series: { script: string; buckets: StatsBucket[] }[];
}

/** A plain app variable, readable by its scripts. */
export interface Variable {
	name: string;
	value: string;
	updated_at: Timestamp;
}

/** A secret: its value is write-only, the server never sends it back. */
export interface SecretSummary {
	name: string;
	updated_at: Timestamp;
}

/** One key of the app's key-value store (`GET /apps/{app}/kv`). */
export interface KvEntry {
	key: string;
	value: unknown;
	expires_at: Timestamp | null;
}

/** A page of keys; pass `next` as `after` for the following one (`null` on the last). */
export interface KvPage {
	items: KvEntry[];
	next: string | null;
}

/** A cron schedule that runs a script. */
export interface Schedule {
	id: number | string;
	script: string;
	cron: string;
	timezone: string;
	payload: unknown;
	enabled: boolean;
	next_run_at: Timestamp | null;
	created_at?: Timestamp;
}

export interface ScheduleInput {
	script?: string;
	cron?: string;
	timezone?: string;
	payload?: unknown;
	enabled?: boolean;
}

/** One static file the app serves. */
export interface StaticFile {
	path: string;
	size: number;
	etag: string;
	modified: Timestamp;
	content_type?: string;
}

/** `GET /apps/{app}/files`: the files with the app's usage and quota. */
export interface StaticFileList {
	files: StaticFile[];
	usage?: { files: number; bytes: number };
	quota?: { max_file_bytes: number; max_total_bytes: number; max_files: number };
}

/** Limits an app admin may set for the app (`settings.limits`); absent means the server's default. */
export interface AppLimits {
	fuel?: number;
	deadline_ms?: number;
	memory_bytes?: number;
	output_bytes?: number;
}

/** The subset of `EventSource` the live tail needs, so tests can pass their own. */
export interface EventSourceLike {
	/** 0 connecting, 1 open, 2 closed (the browser gave up: a refused or non-SSE answer). */
	readonly readyState: number;
	addEventListener(type: string, listener: (event: MessageEvent) => void): void;
	close(): void;
	onerror: ((event: Event) => void) | null;
	onopen: ((event: Event) => void) | null;
}
export type EventSourceFactory = (url: string) => EventSourceLike;
/** The state of a live tail. */
export type LiveStatus = 'open' | 'reconnecting' | 'closed';

/** Why a call failed, as the server said it (or `network_error`, status 0). */
export class ApiError extends Error {
	readonly status: number;
	readonly code: string;
	/** For `422 compile_error`: where the compiler stopped, from 1. */
	readonly line?: number;
	readonly column?: number;
	/** For `422 invalid_input`: the field at fault. */
	readonly field?: string;
	/** For `403 forbidden`: the missing permission. */
	readonly permission?: string;
	/** For `422 compile_error`: the compiler's message without the position. */
	readonly detail?: string;

	constructor(init: {
		status: number;
		code: string;
		message: string;
		line?: number;
		column?: number;
		field?: string;
		permission?: string;
		detail?: string;
	}) {
		super(init.message);
		this.name = 'ApiError';
		this.status = init.status;
		this.code = init.code;
		this.line = init.line;
		this.column = init.column;
		this.field = init.field;
		this.permission = init.permission;
		this.detail = init.detail;
	}
}

/** Turns a failed answer's body into an {@link ApiError}. */
export function errorFromBody(status: number, text: string): ApiError {
	let parsed: unknown;
	try {
		parsed = JSON.parse(text);
	} catch {
		parsed = undefined;
	}
	const error =
		typeof parsed === 'object' && parsed !== null && 'error' in parsed
			? (parsed as { error: Record<string, unknown> }).error
			: undefined;
	if (!error || typeof error.code !== 'string') {
		return new ApiError({
			status,
			code: 'http_' + status,
			message: text.trim() || `the server answered ${status} without details`
		});
	}
	const numberOrUndefined = (value: unknown) => (typeof value === 'number' ? value : undefined);
	const stringOrUndefined = (value: unknown) => (typeof value === 'string' ? value : undefined);
	return new ApiError({
		status,
		code: error.code,
		message: stringOrUndefined(error.message) ?? error.code,
		line: numberOrUndefined(error.line),
		column: numberOrUndefined(error.column),
		field: stringOrUndefined(error.field),
		permission: stringOrUndefined(error.permission),
		detail: stringOrUndefined(error.detail)
	});
}

/** Whether `error` means "log in first". */
export function isUnauthenticated(error: unknown): boolean {
	return error instanceof ApiError && error.status === 401 && error.code === 'unauthenticated';
}

/** Words for any thrown value, for showing next to the control that failed. */
export function describeError(error: unknown): string {
	if (error instanceof ApiError) return error.message;
	if (error instanceof Error) return error.message;
	return String(error);
}

type Fetch = typeof fetch;
type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

const API_PREFIX = '/api/v1';
const segment = encodeURIComponent;

/** `?a=1&b=2` from the defined, non-empty values of `params`, or ''. */
export function query(params: object): string {
	const search = new URLSearchParams();
	for (const [key, value] of Object.entries(params)) {
		if (value === undefined || value === null || value === '') continue;
		search.set(key, String(value));
	}
	const text = search.toString();
	return text ? '?' + text : '';
}

/**
 * A client over `fetchImpl` talking to the server at `origin` ('' for the
 * page's own origin). It remembers the session's CSRF token from log-in and
 * `auth.me()` and sends it with every state-changing request.
 */
export function createApi(
	fetchImpl: Fetch = (...args) => fetch(...args),
	origin = '',
	eventSourceImpl: EventSourceFactory = (url) => new EventSource(url)
) {
	let csrfToken: string | undefined;
	let onSessionLost: (() => void) | undefined;

	async function send(input: string, init: RequestInit): Promise<Response> {
		try {
			return await fetchImpl(input, init);
		} catch (error) {
			throw new ApiError({
				status: 0,
				code: 'network_error',
				message: `cannot reach the server: ${describeError(error)}`
			});
		}
	}

	async function request<T>(method: Method, path: string, body?: unknown): Promise<T> {
		const headers: Record<string, string> = { accept: 'application/json' };
		if (body !== undefined) headers['content-type'] = 'application/json';
		if (method !== 'GET' && csrfToken) headers['x-csrf-token'] = csrfToken;
		const response = await send(origin + API_PREFIX + path, {
			method,
			headers,
			credentials: 'same-origin',
			body: body === undefined ? undefined : JSON.stringify(body)
		});
		const text = await response.text();
		if (!response.ok) {
			const error = errorFromBody(response.status, text);
			// A session that ended (expired, logged out elsewhere, user
			// deactivated) while a page was open: let the app send the person
			// to the log-in page instead of showing errors everywhere.
			if (isUnauthenticated(error) && path !== '/auth/me') {
				csrfToken = undefined;
				onSessionLost?.();
			}
			throw error;
		}
		if (response.status === 204 || text === '') return undefined as T;
		return JSON.parse(text) as T;
	}

	/** A state-changing request with a raw body (file uploads). */
	async function requestRaw<T>(method: Method, path: string, body: BodyInit, contentType: string): Promise<T> {
		const headers: Record<string, string> = { accept: 'application/json', 'content-type': contentType };
		if (csrfToken) headers['x-csrf-token'] = csrfToken;
		const response = await send(origin + API_PREFIX + path, { method, headers, credentials: 'same-origin', body });
		const text = await response.text();
		if (!response.ok) {
			const error = errorFromBody(response.status, text);
			if (isUnauthenticated(error)) {
				csrfToken = undefined;
				onSessionLost?.();
			}
			throw error;
		}
		if (response.status === 204 || text === '') return undefined as T;
		return JSON.parse(text) as T;
	}

	/** The items of a list answer, whether `{"items": [...]}` or a bare array. */
	async function listOf<T>(path: string, key = 'items'): Promise<T[]> {
		const answer = await request<T[] | Record<string, unknown>>('GET', path);
		if (Array.isArray(answer)) return answer;
		const items = answer?.[key];
		return Array.isArray(items) ? (items as T[]) : [];
	}

	const app = (slug: string) => `/apps/${segment(slug)}`;
	const streamUrl = (slug: string, script?: string) =>
		`${origin}${API_PREFIX}${app(slug)}/invocations/stream${query({ script })}`;
	const filePath = (path: string) =>
		path.replace(/^\/+/, '').split('/').map(segment).join('/');
	const script = (slug: string, name: string) => `${app(slug)}/scripts/${segment(name)}`;

	return {
		/** Called when a request answers `401 unauthenticated` (not for `auth.me`, which asks). */
		onSessionLost(listener: (() => void) | undefined) {
			onSessionLost = listener;
		},
		auth: {
			async login(login: string, password: string): Promise<LoginResult> {
				const result = await request<LoginResult>('POST', '/auth/login', { login, password });
				csrfToken = result.csrf_token;
				return result;
			},
			async logout(): Promise<void> {
				await request<void>('POST', '/auth/logout');
				csrfToken = undefined;
			},
			async me(): Promise<Me> {
				const me = await request<Me>('GET', '/auth/me');
				csrfToken = me.csrf_token;
				return me;
			}
		},
		apps: {
			list: () => request<App[]>('GET', '/apps'),
			get: (slug: string) => request<App>('GET', app(slug)),
			create: (input: { slug: string; name?: string }) => request<App>('POST', '/apps', input),
			update: (slug: string, input: { name?: string; settings?: Record<string, unknown> }) =>
				request<App>('PATCH', app(slug), input),
			remove: (slug: string) => request<void>('DELETE', app(slug))
		},
		scripts: {
			list: (slug: string) => request<ScriptSummary[]>('GET', `${app(slug)}/scripts`),
			get: (slug: string, name: string) => request<ScriptDetail>('GET', script(slug, name)),
			/** Compiles in the sandbox, stores and activates; `422 compile_error` carries line/column. */
			deploy: (slug: string, name: string, source: string) =>
				request<ActivatedVersion>('PUT', script(slug, name), { source }),
			remove: (slug: string, name: string) => request<void>('DELETE', script(slug, name)),
			versions: (slug: string, name: string) =>
				request<VersionSummary[]>('GET', `${script(slug, name)}/versions`),
			version: (slug: string, name: string, number: number) =>
				request<ScriptVersion>('GET', `${script(slug, name)}/versions/${number}`),
			rollback: (slug: string, name: string, version: number) =>
				request<ActivatedVersion>('POST', `${script(slug, name)}/rollback`, { version })
		},
		domains: {
			list: (slug: string) => request<Domain[]>('GET', `${app(slug)}/domains`),
			add: (slug: string, host: string) => request<Domain>('POST', `${app(slug)}/domains`, { host }),
			remove: (slug: string, host: string) =>
				request<void>('DELETE', `${app(slug)}/domains/${segment(host)}`)
		},
		tokens: {
			list: () => request<ApiToken[]>('GET', '/tokens'),
			create: (name: string) => request<CreatedToken>('POST', '/tokens', { name }),
			revoke: (id: number) => request<void>('DELETE', `/tokens/${id}`)
		},
		/** An app's explicit members; every route needs `my_role === 'app_admin'`. */
		appMembers: {
			list: (slug: string) => request<AppMember[]>('GET', `${app(slug)}/members`),
			add: (slug: string, user: UserReference, role: AppRole) =>
				request<AppMember>('POST', `${app(slug)}/members`, { user, role }),
			changeRole: (slug: string, userId: number, role: AppRole) =>
				request<AppMember>('PATCH', `${app(slug)}/members/${userId}`, { role }),
			remove: (slug: string, userId: number) =>
				request<void>('DELETE', `${app(slug)}/members/${userId}`),
			/**
			 * The narrow lookup for app admins who may not browse the directory:
			 * one exact username or e-mail to an addable user, else `404 no_addable_user`.
			 */
			lookup: (slug: string, query: string) =>
				request<AddableUser>('POST', `${app(slug)}/members/lookup`, { query })
		},
		/** The user directory and user management (`instance.manage_users`). */
		admin: {
			users: {
				list: () => request<User[]>('GET', '/admin/users'),
				create: (input: {
					username: string;
					email: string;
					password: string;
					instance_role?: InstanceRole;
				}) => request<User>('POST', '/admin/users', input),
				update: (id: number, input: { instance_role?: InstanceRole; active?: boolean }) =>
					request<User>('PATCH', `/admin/users/${id}`, input)
			}
		},
		/** Invocation records: the Logs tab, its live tail and its charts. */
		invocations: {
			list: (slug: string, filter: InvocationFilter = {}) =>
				request<InvocationPage>('GET', `${app(slug)}/invocations${query(filter)}`),
			get: (slug: string, id: number | string) =>
				request<Invocation>('GET', `${app(slug)}/invocations/${segment(String(id))}`),
			stats: (slug: string, window: StatsWindow, script?: string) =>
				request<InvocationStats>('GET', `${app(slug)}/invocations/stats${query({ window, script })}`),
			/** Where the live tail is served (server-sent events, `event: invocation`). */
			streamUrl,
			/**
			 * Follows new invocations as they happen. The browser's `EventSource`
			 * sends the session cookie (same origin) and reconnects by itself;
			 * `onStatus` says whether the stream is `open`, `reconnecting` (the
			 * browser retries by itself) or `closed` (it gave up, for example
			 * after a `401` or a `404`). Returns a function that stops it.
			 */
			follow(
				slug: string,
				script: string | undefined,
				onInvocation: (invocation: Invocation) => void,
				onStatus: (status: LiveStatus) => void = () => {}
			): () => void {
				const source = eventSourceImpl(streamUrl(slug, script));
				source.addEventListener('invocation', (event) => {
					try {
						onInvocation(JSON.parse(event.data) as Invocation);
					} catch {
						// A malformed event is skipped; the next one may be fine.
					}
				});
				source.onopen = () => onStatus('open');
				source.onerror = () => onStatus(source.readyState === 2 ? 'closed' : 'reconnecting');
				return () => source.close();
			}
		},
		/** Plain variables: names and values, readable by everyone on the app. */
		vars: {
			list: (slug: string) => listOf<Variable>(`${app(slug)}/vars`),
			set: (slug: string, name: string, value: string) =>
				request<Variable>('PUT', `${app(slug)}/vars/${segment(name)}`, { value }),
			remove: (slug: string, name: string) => request<void>('DELETE', `${app(slug)}/vars/${segment(name)}`)
		},
		/** Secrets: the server lists names only; a value is sent once and never read back. */
		secrets: {
			list: (slug: string) => listOf<SecretSummary>(`${app(slug)}/secrets`),
			set: (slug: string, name: string, value: string) =>
				request<SecretSummary>('PUT', `${app(slug)}/secrets/${segment(name)}`, { value }),
			remove: (slug: string, name: string) => request<void>('DELETE', `${app(slug)}/secrets/${segment(name)}`)
		},
		/** The hosts a script may call with outbound HTTP. */
		allowlist: {
			async get(slug: string): Promise<string[]> {
				const answer = await request<{ hosts?: string[] }>('GET', `${app(slug)}/http-allowlist`);
				return answer?.hosts ?? [];
			},
			async set(slug: string, hosts: string[]): Promise<string[]> {
				const answer = await request<{ hosts?: string[] }>('PUT', `${app(slug)}/http-allowlist`, { hosts });
				return answer?.hosts ?? hosts;
			}
		},
		/** Browse the app's key-value store; editors delete keys. */
		kv: {
			list: (slug: string, options: { prefix?: string; after?: string; limit?: number } = {}) =>
				request<KvPage>('GET', `${app(slug)}/kv${query(options)}`),
			remove: (slug: string, key: string) => request<void>('DELETE', `${app(slug)}/kv/${segment(key)}`),
			usage: (slug: string) => request<{ keys: number; bytes: number }>('GET', `${app(slug)}/kv-usage`)
		},
		/** Cron schedules that run the app's scripts. */
		schedules: {
			list: (slug: string) => listOf<Schedule>(`${app(slug)}/schedules`),
			create: (slug: string, input: ScheduleInput & { script: string; cron: string }) =>
				request<Schedule>('POST', `${app(slug)}/schedules`, input),
			update: (slug: string, id: number | string, input: ScheduleInput) =>
				request<Schedule>('PATCH', `${app(slug)}/schedules/${segment(String(id))}`, input),
			remove: (slug: string, id: number | string) =>
				request<void>('DELETE', `${app(slug)}/schedules/${segment(String(id))}`)
		},
		/** Static files the app serves; uploads send the raw bytes. */
		files: {
			async list(slug: string): Promise<StaticFileList> {
				const answer = await request<StaticFile[] | Partial<StaticFileList> & { items?: StaticFile[] }>(
					'GET',
					`${app(slug)}/files`
				);
				if (Array.isArray(answer)) return { files: answer };
				return { ...answer, files: answer?.files ?? answer?.items ?? [] };
			},
			upload: (slug: string, path: string, body: Blob | ArrayBuffer | string, contentType?: string) =>
				requestRaw<StaticFile>(
					'PUT',
					`${app(slug)}/files/${filePath(path)}`,
					body,
					contentType || (body instanceof Blob && body.type) || 'application/octet-stream'
				),
			remove: (slug: string, path: string) => request<void>('DELETE', `${app(slug)}/files/${filePath(path)}`)
		},
		/** Script endpoints on the same origin, for the "try it" panel. */
		endpoints: {
			async call(slug: string, name: string, input: EndpointRequest): Promise<EndpointResponse> {
				const method = input.method.toUpperCase();
				const suffix =
					input.pathSuffix === '' || /^[/?]/.test(input.pathSuffix)
						? input.pathSuffix
						: '/' + input.pathSuffix;
				const started = performance.now();
				const response = await send(`${origin}/${segment(slug)}/${segment(name)}${suffix}`, {
					method,
					headers: input.headers.filter(([headerName]) => headerName.trim() !== ''),
					// The session cookie's path is /api, so it never reaches scripts;
					// omit makes that explicit.
					credentials: 'omit',
					body: method === 'GET' || method === 'HEAD' || input.body === '' ? undefined : input.body
				});
				const body = await response.text();
				return {
					status: response.status,
					statusText: response.statusText,
					headers: [...response.headers.entries()],
					body,
					durationMs: Math.round(performance.now() - started)
				};
			}
		}
	};
}

export type Api = ReturnType<typeof createApi>;

/** The client the dashboard uses. */
export const api: Api = createApi();
