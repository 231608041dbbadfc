import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vitest/config';

// `npm run dev` proxies the API and script endpoints to a running picloud
// server (PICLOUD_URL, default http://127.0.0.1:8080), so cookies stay on
// one origin as they do in production.
const target = process.env.PICLOUD_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
	plugins: [sveltekit()],
	server: {
		proxy: {
			'/api': { target, changeOrigin: false },
			'^/(?!dashboard|@|src/|node_modules/|\\.svelte-kit/)[^/]+/[^/]+': { target, changeOrigin: false }
		}
	},
	test: {
		include: ['src/**/*.test.ts'],
		environment: 'node'
	}
});
