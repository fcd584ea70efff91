/**
 * The small part of better-sqlite3's API that workers/ledger-task.ts uses (the package
 * ships no types, and this avoids a dependency on @types/better-sqlite3).
 */
declare module "better-sqlite3" {
  namespace Database {
    interface RunResult {
      changes: number;
      lastInsertRowid: number | bigint;
    }
    interface Statement {
      run(...params: unknown[]): RunResult;
      get(...params: unknown[]): unknown;
      all(...params: unknown[]): unknown[];
    }
    interface Database {
      pragma(source: string, options?: { simple?: boolean }): unknown;
      exec(source: string): this;
      prepare(source: string): Statement;
      transaction<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R;
      close(): this;
    }
  }
  interface DatabaseConstructor {
    new (filename: string, options?: { readonly?: boolean; fileMustExist?: boolean; timeout?: number }): Database.Database;
  }
  const Database: DatabaseConstructor;
  export default Database;
}
