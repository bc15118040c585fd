// Test certificates made with openssl at test time: a CA, and node or client certificates it signs, in a
// temp folder (the commands are the README's, section TLS). Node certificates name their member identity
// (nodeAltNames); client certificates name none.

import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

/** subjectAltName of a node certificate: the loopback host and the member identity (README, TLS). */
export function nodeAltNames(id: number, clusterId = "sec"): string {
  return `IP:127.0.0.1,DNS:localhost,URI:raftkv://${encodeURIComponent(clusterId)}/member/${id}`;
}

export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

export interface TestCa {
  readonly dir: string;
  readonly name: string;
  /** The CA's certificate (what nodes and clients trust). */
  readonly caFile: string;
  /** A certificate signed by this CA; `altNames` like "IP:127.0.0.1,DNS:localhost". */
  issue(name: string, altNames?: string, days?: number): CertFiles;
}

function openssl(args: readonly string[], cwd: string): void {
  try {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`openssl ${args.join(" ")} failed: ${stderr.trim()}`);
  }
}

/** A new CA named `name` whose files live in `dir`. */
export function makeCa(dir: string, name: string): TestCa {
  const caKey = join(dir, `${name}.key`);
  const caFile = join(dir, `${name}.crt`);
  openssl(
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      caKey,
      "-out",
      caFile,
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  return {
    dir,
    name,
    caFile,
    issue(certName, altNames = "IP:127.0.0.1,DNS:localhost", days = 2) {
      const key = join(dir, `${name}-${certName}.key`);
      const csr = join(dir, `${name}-${certName}.csr`);
      const cert = join(dir, `${name}-${certName}.crt`);
      const ext = join(dir, `${name}-${certName}.ext`);
      writeFileSync(
        ext,
        `subjectAltName=${altNames}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n`,
      );
      openssl(
        [
          "req",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:prime256v1",
          "-nodes",
          "-keyout",
          key,
          "-out",
          csr,
          "-subj",
          `/CN=${certName}`,
        ],
        dir,
      );
      openssl(
        [
          "x509",
          "-req",
          "-in",
          csr,
          "-CA",
          caFile,
          "-CAkey",
          caKey,
          "-CAcreateserial",
          "-out",
          cert,
          "-days",
          String(days),
          "-extfile",
          ext,
        ],
        dir,
      );
      return { cert, key };
    },
  };
}
