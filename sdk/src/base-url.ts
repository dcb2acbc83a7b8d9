/**
 * URLs the SDK sends credentials to or trusts keys from. Plain `http:` is accepted for
 * loopback only unless the caller names the risk (`allowInsecureHttp`): over the network
 * it would send keys and tokens in clear text, and let anyone on the path swap the JWKS.
 */
export function gatehouseURL(value: string | URL, name: string, options: { allowInsecureHttp?: boolean }): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError(`${name} must be an absolute URL, e.g. https://auth.example.com`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new TypeError(`${name} must be http(s)`);
  if (url.protocol === "http:" && !isLoopback(url.hostname) && options.allowInsecureHttp !== true) {
    throw new TypeError(
      `${name} uses http: to a non-loopback host, which sends credentials in clear text and lets anyone on the path change the answers; use https: or set allowInsecureHttp`,
    );
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new TypeError(`${name} must not carry credentials, a query or a fragment`);
  }
  return url;
}

/**
 * `path` under `base`, keeping a path prefix: Gatehouse behind a reverse proxy at
 * `https://gw/auth` answers at `https://gw/auth/v1/...`.
 */
export function endpointUnder(base: URL, path: string): URL {
  const prefix = base.pathname.endsWith("/") ? base.pathname : `${base.pathname}/`;
  return new URL(`${prefix}${path}`, base);
}

export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127(?:\.\d{1,3}){3}$/.test(hostname);
}
