// Validate an AsyncAPI document with the official parser (@asyncapi/parser 3.x, the Avro
// schema parser registered so referenced .avsc payloads are parsed too).
//   NODE_PATH=.cache/asyncapi/node_modules node tests/contract/validate_asyncapi.cjs docs/asyncapi.yaml [more.yaml ...]
// Prints every diagnostic as "file: severity code path: message", then "file: valid ..." or
// "file: INVALID"; exit 1 when any file has an error or a warning.
"use strict";
const path = require("path");
const { Parser, fromFile } = require("@asyncapi/parser");
const { AvroSchemaParser } = require("@asyncapi/avro-schema-parser");

const SEVERITY = ["error", "warning", "info", "hint"];

async function validate(parser, file) {
  const { document, diagnostics } = await fromFile(parser, path.resolve(file)).parse();
  let failed = !document;
  for (const d of diagnostics) {
    const where = (d.path || []).join(".");
    console.log(`${file}: ${SEVERITY[d.severity] || d.severity} ${d.code} ${where}: ${d.message}`);
    if (d.severity <= 1) failed = true;
  }
  if (!failed) failed = !(await validateAvro(file, document));
  if (failed) {
    console.log(`${file}: INVALID`);
    return false;
  }
  const channels = document.channels().all().length;
  const messages = document.allMessages().all().length;
  console.log(`${file}: valid AsyncAPI ${document.version()}, ${channels} channels, ${messages} messages`);
  return true;
}

// For AsyncAPI 3 the parser converts Avro payloads (into JSON Schema) but does not run the Avro
// parser's validation; run it on each referenced schema, so a bad .avsc fails here too.
async function validateAvro(file, document) {
  const avro = AvroSchemaParser();
  let ok = true;
  for (const message of document.allMessages().all()) {
    const payload = message.payload() && message.payload().json();
    const original = payload && payload["x-parser-original-payload"];
    const format = message.schemaFormat();
    if (!original || !avro.getMimeTypes().includes(format)) continue;
    for (const r of await avro.validate({ data: original, schemaFormat: format, path: [] })) {
      console.log(`${file}: error avro-schema messages.${message.id()}.payload.schema: ${r.message}`);
      ok = false;
    }
  }
  return ok;
}

async function main(files) {
  const parser = new Parser();
  parser.registerSchemaParser(AvroSchemaParser());
  let ok = true;
  for (const file of files) ok = (await validate(parser, file)) && ok;
  process.exit(ok ? 0 : 1);
}

main(process.argv.slice(2)).catch((err) => {
  console.log(`parser failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
