// The package version, one source for the Node bundles (the CLI, the extension host): esbuild.js defines
// CIRCUITLENS_VERSION from package.json. Workers refuse chunks of another version; reports and exports carry it.
declare const CIRCUITLENS_VERSION: string | undefined;

/** The package version, set by the build (esbuild.js); 0.0.0 when run unbundled. */
export const VERSION = typeof CIRCUITLENS_VERSION === 'string' ? CIRCUITLENS_VERSION : '0.0.0';
