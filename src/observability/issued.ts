/** Kinds of credential Gatehouse issues, as counted by `gatehouse_tokens_issued_total`. */
export type IssuedKind = "api_key" | "access_token" | "refresh_token" | "session";

/** Told of every credential issued, once it is stored (metrics). */
export type OnIssued = (kind: IssuedKind) => void;
