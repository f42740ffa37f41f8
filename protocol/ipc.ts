// How the two ends of a channel talk, gitlens-style: a command goes one way and is not answered, a notification
// tells the other end what changed, and a request names the type of its response, so an answer of the wrong type
// does not compile: a handler table keyed by method must return each method's own result, and a caller's promise
// has that type. Types only (no vscode, DOM or Node): both the extension host and the webviews import this floor.

/** A request: its method (`scope/verb`), its parameters and its result. Used as a type only. */
export interface RequestType<M extends string, P, R> {
  method: M;
  params: P;
  result: R;
}

export type AnyRequest = RequestType<string, unknown, unknown>;

export type ParamsOf<Q extends AnyRequest, M extends Q['method']> = Extract<Q, { method: M }>['params'];
export type ResultOf<Q extends AnyRequest, M extends Q['method']> = Extract<Q, { method: M }>['result'];

/** On the wire: a request, tagged by its method and numbered by its sender. */
export type RequestMessage<Q extends AnyRequest> = Q extends AnyRequest ? { t: Q['method']; id: number; params: Q['params'] } : never;

/** On the wire: the answer to request `id` (`<method>/response`), its result or why there is none. */
export type ResponseMessage<Q extends AnyRequest> = Q extends AnyRequest
  ? { t: `${Q['method']}/response`; id: number; ok: true; result: Q['result'] } | { t: `${Q['method']}/response`; id: number; ok: false; error: string }
  : never;

/** What every view sends its panel: that it is ready for its state (answered with StateToView), or an error to report. */
export type ViewToHost = { t: 'ready' } | { t: 'error'; message: string };

/** The host's notification to a view: the whole state it draws, a snapshot, never a delta. */
export interface StateToView<S> { t: 'state'; state: S }

/** One handler per method of `Q`: each gets its own request's parameters and must return its own result. */
export type RequestHandlers<Q extends AnyRequest> = { [M in Q['method']]: (params: ParamsOf<Q, M>) => Promise<ResultOf<Q, M>> };
