/** The HTTP/JSON transport over Node's built-in fetch. */

/** An error answer of `duraflow serve`: its HTTP status, stable code and message. */
export class DuraflowError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(`${code} (${status}): ${message}`);
    this.name = "DuraflowError";
  }
}

/** How long a request may take unless its sender says otherwise, in milliseconds (as the
 * Python SDK). */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** Sends JSON requests to a server, with its bearer token. */
export class Http {
  readonly url: string;

  constructor(
    url: string,
    private readonly token?: string,
    /** How long a request may take unless {@link Http.request} is given its own time. */
    readonly timeoutMs: number = DEFAULT_TIMEOUT_MS,
  ) {
    this.url = url.replace(/\/+$/, "");
  }

  /** Sends a request; the answer's JSON body, or a `DuraflowError` for an error answer.
   * Connection failures reject with fetch's `TypeError`; a server that has not answered in
   * full within `timeoutMs` (default: the one this `Http` was made with) rejects it with a
   * `DOMException` named `TimeoutError`, so a hung server never stalls a worker for good. */
  async request<T = unknown>(method: string, path: string, body?: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.token) headers["authorization"] = `Bearer ${this.token}`;
    const signal = AbortSignal.timeout(timeoutMs);
    const response = await fetch(this.url + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    // The body is read under the same deadline.
    const text = await response.text();
    if (!response.ok) {
      let code = "http_error";
      let message = text;
      try {
        const error = JSON.parse(text).error;
        code = error.code;
        message = error.message;
      } catch {
        // Not the server's JSON error: keep the text.
      }
      throw new DuraflowError(response.status, code, message);
    }
    return (text ? JSON.parse(text) : null) as T;
  }
}
