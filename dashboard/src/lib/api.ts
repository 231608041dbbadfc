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

/**
 * A client over `fetchImpl` talking to the server at `origin` ('' for the
 * page's own origin). It remembers the session's CSRF token from log-in and
 * `auth.me()` and sends it with every state-changing request.
 */
export function createApi(fetchImpl: Fetch = (...args) => fetch(...args), origin = '') {
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

	const app = (slug: string) => `/apps/${segment(slug)}`;
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
