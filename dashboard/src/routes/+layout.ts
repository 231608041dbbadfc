// A single-page app: rendered in the browser only, served from index.html.
export const ssr = false;
export const prerender = false;
export const trailingSlash = 'ignore';
