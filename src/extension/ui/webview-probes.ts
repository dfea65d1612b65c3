// Requests a webview answers by id (tests ask a panel what it shows): each waits for its reply or times out.
export class WebviewProbes<Reply extends { requestId: number }> {
  private nextRequest = 1;
  private readonly waiting = new Map<number, (r: Reply) => void>();

  constructor(private readonly what: string) {}

  /** Sends a new request with `send` and resolves with the webview's reply to it. */
  ask(send: (requestId: number) => void, timeoutMs: number): Promise<Reply> {
    const requestId = this.nextRequest++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(requestId);
        reject(new Error(`The ${this.what} webview did not answer.`));
      }, timeoutMs);
      this.waiting.set(requestId, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      send(requestId);
    });
  }

  /** A reply from the webview. */
  answer(reply: Reply): void {
    this.waiting.get(reply.requestId)?.(reply);
    this.waiting.delete(reply.requestId);
  }
}
