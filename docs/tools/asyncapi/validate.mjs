// Validates an AsyncAPI document with the AsyncAPI parser, Avro payloads included.
// Usage: node validate.mjs <document>. Prints the diagnostics and exits 1 on an error.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Parser, fromFile } from '@asyncapi/parser';
import { AvroSchemaParser } from '@asyncapi/avro-schema-parser';

const path = resolve(process.argv[2] ?? '');
const parser = new Parser();
parser.registerSchemaParser(AvroSchemaParser());
const { document, diagnostics } = await fromFile(parser, path).parse();
// Severity 0 is an error; 1-3 are warnings, information and hints.
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) {
  const where = d.path && d.path.length ? d.path.join('.') : '(document)';
  console.log(`${d.severity === 0 ? 'error' : 'warning'} ${where}: ${d.message}`);
}
if (errors.length > 0 || !document) {
  console.log(`${path}: ${errors.length} error(s)`);
  process.exit(1);
}
console.log(`${path}: valid AsyncAPI ${document.version()}, ${document.channels().length} channels, ${document.operations().length} operations`);
