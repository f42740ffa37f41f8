/** An error the user caused and can fix. Its message says what is wrong and what to do; no stack is shown. */
export class UserError extends Error {
  constructor(message: string, readonly file?: string, readonly line?: number, readonly column?: number) {
    super(message);
    this.name = 'UserError';
  }
  /** `file:line:col: message` when a location is known. */
  get located(): string {
    if (!this.file) return this.message;
    const pos = this.line !== undefined ? `:${this.line}${this.column !== undefined ? `:${this.column}` : ''}` : '';
    return `${this.file}${pos}: ${this.message}`;
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}

/** Work stopped because the user asked (a cancelled notification, Ctrl-C); not a failure to report. */
export class Cancelled extends Error {
  constructor() { super('cancelled'); this.name = 'Cancelled'; }
}
