export type { HeaderBag, PresentedCredential, PresentedToken, RequestLike } from "./credentials.ts";
export { presentedCredential, presentedToken } from "./credentials.ts";
export type { GuardOptions, GuardResult } from "./guard.ts";
export { guard, rateLimitHeaders } from "./guard.ts";
export type { KeyVerifier, KeyVerifierOptions, VerifyOptions } from "./key-verifier.ts";
export { createKeyVerifier } from "./key-verifier.ts";
export type { ProblemCode, ProblemDocument, ProblemStatus } from "./problems.ts";
export { PROBLEMS } from "./problems.ts";
export type { RequestLogFields } from "./redacted-request.ts";
export { redactedRequest } from "./redacted-request.ts";
export type { TokenGuardOptions, TokenGuardResult } from "./token-guard.ts";
export { guardToken, guardTokenNow } from "./token-guard.ts";
export type {
  TokenAlgorithm,
  TokenVerifier,
  TokenVerifierOptions,
  TokenVerifierStats,
  TokenVerifyOptions,
} from "./token-verifier.ts";
export { createTokenVerifier, TOKEN_ALGORITHMS } from "./token-verifier.ts";
export type { TokenFailureReason, TokenVerifyResult } from "./token-verify-result.ts";
export type { AccessTokenClaims, VerifiedToken } from "./verified-token.ts";
export type { VerifierErrorCode } from "./verifier-error.ts";
export { VerifierError } from "./verifier-error.ts";
export type { RateLimitState, VerifiedKey, VerifyFailureCode, VerifyResult } from "./verify-result.ts";
export { VERIFY_FAILURE_CODES } from "./verify-result.ts";
