// A throwaway certificate authority and a server certificate for 127.0.0.1
// and localhost, made once per test process: with `openssl` when the
// machine has it (fast), else with node-forge (pure JavaScript, slower).

/** A server certificate, its key, and the CA that signed it, all in PEM. */
export interface TestCertificate {
  cert: string;
  key: string;
  ca: string;
}

let made: Promise<TestCertificate> | null = null;

/** The test certificate, made on first use. */
export function testCertificate(): Promise<TestCertificate> {
  made ??= withOpenssl().catch(() => withForge());
  return made;
}

async function withOpenssl(): Promise<TestCertificate> {
  const dir = await Deno.makeTempDir({ prefix: "ws_tls_" });
  try {
    const run = async (...args: string[]) => {
      const { success, stderr } = await new Deno.Command("openssl", {
        args,
        cwd: dir,
        stdout: "null",
        stderr: "piped",
      }).output();
      if (!success) throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(stderr)}`);
    };
    await Deno.writeTextFile(
      `${dir}/leaf.ext`,
      "basicConstraints=critical,CA:FALSE\n" +
        "keyUsage=critical,digitalSignature,keyEncipherment\n" +
        "extendedKeyUsage=serverAuth\n" +
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    await run(
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=Test CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ); // deno-fmt-ignore
    await run(
      "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
      "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost",
    ); // deno-fmt-ignore
    await run(
      "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
      "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext",
    ); // deno-fmt-ignore
    // rustls wants PKCS#8 keys.
    await run("pkcs8", "-topk8", "-nocrypt", "-in", "leaf.key", "-out", "leaf.pk8");
    return {
      cert: await Deno.readTextFile(`${dir}/leaf.pem`),
      key: await Deno.readTextFile(`${dir}/leaf.pk8`),
      ca: await Deno.readTextFile(`${dir}/ca.pem`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function withForge(): Promise<TestCertificate> {
  // deno-lint-ignore no-import-prefix
  const { default: forge } = await import("npm:node-forge@1.3.1");
  const pki = forge.pki;
  const days = (n: number) => new Date(Date.now() + n * 86_400_000);
  // A certificate for `commonName`, valid from yesterday to the day after
  // tomorrow, issued by `issuer` (itself when null) and signed with `signingKey`.
  const certificate = (
    publicKey: unknown,
    serialNumber: string,
    commonName: string,
    issuer: unknown[] | null,
    extensions: unknown[],
    signingKey: unknown,
  ) => {
    const cert = pki.createCertificate();
    cert.publicKey = publicKey;
    cert.serialNumber = serialNumber;
    cert.validity.notBefore = days(-1);
    cert.validity.notAfter = days(2);
    cert.setSubject([{ name: "commonName", value: commonName }]);
    cert.setIssuer(issuer ?? [{ name: "commonName", value: commonName }]);
    cert.setExtensions(extensions);
    cert.sign(signingKey, forge.md.sha256.create());
    return cert;
  };
  const caKeys = pki.rsa.generateKeyPair(2048);
  const ca = certificate(caKeys.publicKey, "01", "Test CA", null, [
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
  ], caKeys.privateKey);
  const leafKeys = pki.rsa.generateKeyPair(2048);
  const leaf = certificate(leafKeys.publicKey, "02", "localhost", ca.subject.attributes, [
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true },
    {
      name: "subjectAltName",
      altNames: [{ type: 7, ip: "127.0.0.1" }, { type: 2, value: "localhost" }],
    },
  ], caKeys.privateKey);
  const pkcs8 = pki.wrapRsaPrivateKey(pki.privateKeyToAsn1(leafKeys.privateKey));
  return {
    cert: pki.certificateToPem(leaf),
    key: pki.privateKeyInfoToPem(pkcs8),
    ca: pki.certificateToPem(ca),
  };
}

/** For checking the fallback by hand: `deno run -A tests/_tls.ts forge`. */
if (import.meta.main) {
  const cert = Deno.args[0] === "forge" ? await withForge() : await testCertificate();
  // deno-lint-ignore no-console
  console.log(cert.cert.length, cert.key.length, cert.ca.length);
}
