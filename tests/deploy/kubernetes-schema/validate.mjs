// Validates every object of the files given against the Kubernetes API schema
// (kubernetes-models' validators, offline); prints each error with its file,
// kind and name; exits 1 if any. Run by tests/deploy/kubernetes-schema/check.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseAllDocuments } from "yaml";

const require = createRequire(import.meta.url);
let failures = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length > 0) {
      console.error(`${file}: ${doc.errors[0].message}`);
      failures++;
      continue;
    }
    const object = doc.toJS();
    const { apiVersion, kind } = object;
    const where = `${file}: ${kind} ${object.metadata?.name}`;
    // "apps/v1" -> kubernetes-models/apps/v1/<Kind>; "v1" -> kubernetes-models/v1/<Kind>.
    let Model;
    try {
      Model = require(`kubernetes-models/${apiVersion}/${kind}`)[kind];
    } catch (e) {
      console.error(`${where}: no schema for apiVersion ${apiVersion} kind ${kind}`);
      failures++;
      continue;
    }
    try {
      new Model(object).validate();
      checked++;
    } catch (e) {
      console.error(`${where}: ${e.message}`);
      failures++;
    }
  }
}
console.log(`${checked} object(s) valid, ${failures} error(s)`);
process.exit(failures > 0 || checked === 0 ? 1 : 0);
