// The result line of a program run in the VM (test/vm/scripts/, the VM
// benchmarks): the program prints its findings as one JSON object — with
// `error` when it failed — and the host reads the last such line.

export type Result = Record<string, unknown>;

/**
 * Runs main() and then prints `result` (which main fills in as it goes) as
 * the result line, with `error` added when main failed; exits 0 or 1.
 * onError runs after the line, e.g. to print a log worth reading.
 */
export function reportResult(main: () => Promise<void>, result: Result = {}, onError?: () => void): void {
  main().then(
    () => {
      console.log(JSON.stringify(result));
      process.exit(0);
    },
    (e: unknown) => {
      console.log(JSON.stringify({ ...result, error: e instanceof Error ? e.message : String(e) }));
      onError?.();
      process.exit(1);
    },
  );
}

/** The last result line in `output`; throws (with the output) when there is none or it reports an error. */
export function resultLine(output: string, what: string): Result {
  const line = output.split('\n').reverse().find((l) => l.startsWith('{'));
  if (line === undefined) throw new Error(`${what}: no result line in its output:\n${output}`);
  const res = JSON.parse(line) as Result;
  if (res.error !== undefined) throw new Error(`${what}: ${typeof res.error === 'string' ? res.error : JSON.stringify(res.error)}\n${output}`);
  return res;
}
