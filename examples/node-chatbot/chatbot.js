#!/usr/bin/env node
// A terminal chatbot in Node.js, as in the classic "build a GPT-4 chatbot" tutorial: it keeps the
// conversation history (with a system message), lets you pick gpt-3.5-turbo or gpt-4, caps replies
// with max_tokens and retries failed calls with a configurable maximum and delay.
//
// Nothing in here knows about tokencost. Its spend is logged by running it under the proxy:
//
//     tokencost run -- node chatbot.js            # or: tokencost proxy, then OPENAI_BASE_URL=...
//
// Interactive on a terminal. With stdin from a pipe or file it reads one message per line and
// exits at the end (no model question, no prompt), so scripts and tests can drive it:
//
//     printf 'Hello\n/model gpt-4\nAnd you?\n' | node chatbot.js --model gpt-3.5-turbo
//
// Commands: /model NAME, /stream on|off, /reset (forget the history), /exit [CODE].
// Options (or environment): --model (CHATBOT_MODEL), --max-tokens (CHATBOT_MAX_TOKENS),
// --retries (CHATBOT_MAX_RETRIES), --retry-delay ms (CHATBOT_RETRY_DELAY_MS), --stream,
// --system TEXT (CHATBOT_SYSTEM). OPENAI_API_KEY and OPENAI_BASE_URL are read by the openai package.

import dotenv from 'dotenv';
import readline from 'node:readline';
import { parseArgs } from 'node:util';
import chalk from 'chalk';
import OpenAI from 'openai';

dotenv.config({ quiet: true }); // .env may hold OPENAI_API_KEY; the environment wins

const MODELS = ['gpt-3.5-turbo', 'gpt-4'];

const { values: opts } = parseArgs({
  options: {
    model: { type: 'string', default: process.env.CHATBOT_MODEL },
    'max-tokens': { type: 'string', default: process.env.CHATBOT_MAX_TOKENS ?? '256' },
    retries: { type: 'string', default: process.env.CHATBOT_MAX_RETRIES ?? '3' },
    'retry-delay': { type: 'string', default: process.env.CHATBOT_RETRY_DELAY_MS ?? '1000' },
    stream: { type: 'boolean', default: false },
    system: { type: 'string', default: process.env.CHATBOT_SYSTEM ?? 'You are a helpful assistant.' },
  },
});

const interactive = Boolean(process.stdin.isTTY);
const maxTokens = positiveInt(opts['max-tokens'], '--max-tokens');
const maxRetries = nonNegativeInt(opts.retries, '--retries');
const retryDelayMs = nonNegativeInt(opts['retry-delay'], '--retry-delay');

if (!process.env.OPENAI_API_KEY) {
  console.error(chalk.red('OPENAI_API_KEY is not set: put it in .env or the environment.'));
  process.exit(2);
}

// Our own retry loop below is the one the tutorial teaches; the SDK's would hide it.
const openai = new OpenAI({ maxRetries: 0 });

function positiveInt(value, name) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) usage(`${name} must be a whole number of 1 or more, got ${value}`);
  return n;
}

function nonNegativeInt(value, name) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) usage(`${name} must be a whole number of 0 or more, got ${value}`);
  return n;
}

function usage(message) {
  console.error(chalk.red(`chatbot: ${message}`));
  process.exit(2);
}

function checkModel(name) {
  if (!MODELS.includes(name)) usage(`unknown model ${name}; choose one of ${MODELS.join(', ')}`);
  return name;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// 429s, 5xx and network errors are worth another try; a 400 will fail the same way again.
function retryable(err) {
  if (err instanceof OpenAI.APIConnectionError) return true;
  if (err instanceof OpenAI.APIError) return err.status === 429 || (err.status ?? 0) >= 500;
  return false;
}

async function withRetries(fn) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= maxRetries || !retryable(err)) throw err;
      const wait = retryDelayMs * 2 ** attempt;
      console.error(chalk.yellow(`  (${err.status ?? 'network'} error, retry ${attempt + 1}/${maxRetries} in ${wait} ms)`));
      await sleep(wait);
    }
  }
}

async function reply(state) {
  const request = { model: state.model, messages: state.history, max_tokens: maxTokens };
  if (!state.stream) {
    const completion = await withRetries(() => openai.chat.completions.create(request));
    const text = completion.choices[0]?.message?.content ?? '';
    process.stdout.write(chalk.green(`${state.model}: `) + text + '\n');
    const u = completion.usage;
    if (u) console.log(chalk.dim(`  [tokens: ${u.prompt_tokens} prompt + ${u.completion_tokens} completion]`));
    return text;
  }
  const stream = await withRetries(() => openai.chat.completions.create({ ...request, stream: true }));
  process.stdout.write(chalk.green(`${state.model}: `));
  let text = '';
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta?.content ?? '';
    text += delta;
    process.stdout.write(delta);
  }
  process.stdout.write('\n');
  return text;
}

async function main() {
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: interactive });
  const lines = rl[Symbol.asyncIterator]();
  const next = async (prompt) => {
    if (interactive) process.stdout.write(prompt);
    const { value, done } = await lines.next();
    return done ? null : value;
  };

  let model = opts.model;
  if (!model && interactive) {
    console.log(MODELS.map((m, i) => `  ${i + 1}) ${m}`).join('\n'));
    const answer = (await next(chalk.cyan('Choose a model [1]: '))) ?? '';
    model = MODELS[Number(answer.trim() || '1') - 1] ?? answer.trim();
  }
  const state = {
    model: checkModel(model ?? MODELS[0]),
    stream: opts.stream,
    history: [{ role: 'system', content: opts.system }],
  };
  if (interactive) console.log(chalk.dim(`Chatting with ${state.model} (max_tokens ${maxTokens}). /exit to quit.`));

  let failures = 0;
  for (;;) {
    const line = await next(chalk.cyan('You: '));
    if (line === null) break;
    const input = line.trim();
    if (!input) continue;
    if (input.startsWith('/')) {
      const [cmd, arg] = input.slice(1).split(/\s+/, 2);
      if (cmd === 'exit') {
        rl.close();
        return Number(arg ?? (failures ? 1 : 0));
      } else if (cmd === 'model') {
        state.model = checkModel(arg);
        console.log(chalk.dim(`  now using ${state.model}`));
      } else if (cmd === 'stream') {
        state.stream = arg !== 'off';
        console.log(chalk.dim(`  streaming ${state.stream ? 'on' : 'off'}`));
      } else if (cmd === 'reset') {
        state.history = state.history.slice(0, 1);
        console.log(chalk.dim('  history cleared'));
      } else {
        console.log(chalk.red(`  unknown command /${cmd}`));
      }
      continue;
    }
    state.history.push({ role: 'user', content: input });
    try {
      const text = await reply(state);
      state.history.push({ role: 'assistant', content: text });
    } catch (err) {
      failures += 1;
      state.history.pop(); // the question was not answered: do not send it twice
      console.error(chalk.red(`Error: ${err.status ? `${err.status} ` : ''}${err.message}`));
    }
  }
  rl.close();
  return failures && !interactive ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(chalk.red(`chatbot: ${err.stack ?? err}`));
    process.exit(1);
  },
);
