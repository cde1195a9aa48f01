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

/** Sends JSON requests to a server, with its bearer token. */
export class Http {
  readonly url: string;

  constructor(
    url: string,
    private readonly token?: string,
  ) {
    this.url = url.replace(/\/+$/, "");
  }

  /** Sends a request; the answer's JSON body, or a `DuraflowError` for an error answer.
   * Connection failures reject with fetch's `TypeError`. */
  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.token) headers["authorization"] = `Bearer ${this.token}`;
    const response = await fetch(this.url + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
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
