import type { AnyRequest, ParamsOf, RequestMessage, ResponseMessage, ResultOf } from '../../protocol/ipc';

/** The asking end of a channel: numbers each request and settles its promise with the response of the same id. */
export class Requests<Q extends AnyRequest> {
  private next = 1;
  private readonly pending = new Map<number, { resolve(r: unknown): void; reject(e: Error): void }>();

  constructor(private readonly send: (m: RequestMessage<Q>, transfer: Transferable[]) => void) {}

  request<M extends Q['method']>(method: M, params: ParamsOf<Q, M>, transfer: Transferable[] = []): Promise<ResultOf<Q, M>> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (r: unknown) => void, reject });
      this.send({ t: method, id, params } as RequestMessage<Q>, transfer);
    });
  }

  /** Settles the request `m` answers (a response to nothing pending is ignored). */
  settle(m: ResponseMessage<Q>): void {
    const p = this.pending.get(m.id);
    this.pending.delete(m.id);
    if (p) (m.ok ? p.resolve(m.result) : p.reject(new Error(m.error)));
  }

  /** Fails every pending request (the other end is gone). */
  failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}
