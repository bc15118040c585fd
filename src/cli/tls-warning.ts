// Silences Node's DEP0123 warning, which gRPC triggers by dialing "127.0.0.1:port" over TLS (it sets the
// TLS server name to the IP; the certificate is still checked against the IP): noise on a CLI's stderr.

/** Drops DEP0123 from this process's warnings; every other warning still prints. */
export function quietIpServernameWarning(): void {
  const emit = process.emitWarning;
  const filtered = (warning: string | Error, ...rest: unknown[]): void => {
    const code = rest.find((r): r is string => typeof r === "string" && /^DEP\d+$/.test(r));
    const options = rest[0];
    const optionsCode =
      typeof options === "object" && options !== null && "code" in options ? options.code : undefined;
    if (code === "DEP0123" || optionsCode === "DEP0123") return;
    Reflect.apply(emit, process, [warning, ...rest]);
  };
  process.emitWarning = filtered as typeof process.emitWarning;
}
