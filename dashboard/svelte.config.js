import adapter from '@sveltejs/adapter-static';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';

/** @type {import('@sveltejs/kit').Config} */
const config = {
	preprocess: vitePreprocess(),
	kit: {
		// A single-page app: every unknown path under /dashboard/ is answered
		// with index.html by the server, and the client router takes over.
		adapter: adapter({ pages: 'build', assets: 'build', fallback: 'index.html', strict: false }),
		paths: { base: '/dashboard' }
	}
};

export default config;
