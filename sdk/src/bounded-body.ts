/** The most a verify answer or `GET /auth/me` may hold: Gatehouse's own are a few KiB at most. */
export const MAX_ANSWER_BYTES = 64 * 1024;
/** The most a JWK Set may hold: Gatehouse publishes a handful of keys, a few KiB. */
export const MAX_JWKS_BYTES = 1024 * 1024;

/**
 * Reads a response body as UTF-8 text, at most `maxBytes` of it. Past that the stream
 * is cancelled (the connection dropped) and the answer is null: a hostile or broken
 * endpoint streaming gigabytes would otherwise be buffered whole in the resource
 * server's memory (`Response.text()` has no limit) until the timeout, if any, struck.
 */
export async function readBoundedText(response: Response, maxBytes: number): Promise<string | null> {
  const body = response.body;
  if (body === null) return "";
  const declared = Number(response.headers.get("content-length"));
  if (declared > maxBytes) {
    await body.cancel();
    return null;
  }
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  // What Response.text() does: UTF-8, a BOM dropped, invalid bytes replaced.
  return new TextDecoder().decode(Buffer.concat(chunks));
}
