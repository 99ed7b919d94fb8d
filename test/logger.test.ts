/**
 * The log output (issue 16): lines reach their descriptor in order; a reader that went away, a
 * full disk or a reader that does not keep up never throws, blocks or grows memory without bound,
 * and each is reported once. (test/main.test.ts runs the built service against the same.)
 */
import { execFileSync, spawn } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createLogOutput, type LogOutput } from '../src/logger.ts'

const scratch = mkdtempSync(join(tmpdir(), 'qrvisor-logs-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

const flushed = (output: LogOutput) => new Promise<void>((resolve) => output.flush(resolve))

describe('createLogOutput', () => {
  it('writes every line, in order, to its descriptor', async () => {
    const path = join(scratch, 'in-order.log')
    const fd = openSync(path, 'w')
    const output = createLogOutput({ fd })
    const lines = Array.from({ length: 1_000 }, (_, index) => `{"line":${index}}\n`)
    for (const line of lines) output.write(line)
    await flushed(output)
    closeSync(fd)
    expect(readFileSync(path, 'utf8')).toBe(lines.join(''))
  })

  it('on a full disk (/dev/full): says so once, drops the lines, never throws', async () => {
    const failures: string[] = []
    const fd = openSync('/dev/full', 'w')
    const output = createLogOutput({ fd, onFailure: (message) => failures.push(message) })
    for (let index = 0; index < 100; index += 1) output.write(`{"line":${index}}\n`)
    await flushed(output)
    output.write('{"after":"flush"}\n')
    await flushed(output)
    closeSync(fd)
    expect(failures).toEqual([
      'qrvisor: log lines cannot be written (ENOSPC: no space left on device, write); the service keeps running.',
    ])
  })

  it('when its reader has gone (EPIPE): says so once, then drops every line at once', async () => {
    const fifo = join(scratch, 'gone.fifo')
    execFileSync('mkfifo', [fifo])
    // A reader that opens the pipe and exits at once.
    const reader = spawn('sh', ['-c', 'exec 3<"$0"; exit 0', fifo])
    const fd = openSync(fifo, 'w')
    await new Promise((resolve) => reader.once('exit', resolve))
    const failures: string[] = []
    const output = createLogOutput({ fd, onFailure: (message) => failures.push(message) })
    for (let index = 0; index < 100; index += 1) output.write(`{"line":${index}}\n`)
    await flushed(output)
    output.write('{"after":"flush"}\n')
    await flushed(output)
    closeSync(fd)
    expect(failures).toEqual([
      'qrvisor: log lines cannot be written (EPIPE: nobody reads them any more); the service keeps running.',
    ])
  })

  it('drops what a slow reader cannot take past its bound, and says how many once it catches up', async () => {
    const fifo = join(scratch, 'slow.fifo')
    const received = join(scratch, 'slow.log')
    execFileSync('mkfifo', [fifo])
    // A reader that opens the pipe at once but reads nothing for half a second.
    const reader = spawn('sh', ['-c', 'exec 3<"$0"; sleep 0.5; exec cat <&3 >"$1"', fifo, received])
    const readerDone = new Promise((resolve) => reader.once('exit', resolve))
    const fd = openSync(fifo, 'w')
    const failures: string[] = []
    const lost: Array<{ count: number; cause: string }> = []
    const output = createLogOutput({
      fd,
      maxBufferedBytes: 16 * 1024,
      onFailure: (message) => failures.push(message),
      onLinesLost: (count, cause) => lost.push({ count, cause }),
    })
    // 400 KiB of lines: more than the pipe (64 KiB) and the bound (16 KiB) can hold.
    const lines = Array.from({ length: 4_000 }, (_, index) => `{"line":${index}}`.padEnd(99) + '\n')
    for (const line of lines) output.write(line)
    expect(failures).toEqual([
      'qrvisor: log lines cannot be written (the reader does not keep up); the service keeps running.',
    ])
    await flushed(output)
    // The first write after the reader caught up reports the loss.
    output.write(lines[0]!)
    await flushed(output)
    closeSync(fd)
    await readerDone

    expect(lost).toHaveLength(1)
    expect(lost[0]!.cause).toBe('the reader does not keep up')
    const written = readFileSync(received, 'utf8').split('\n').filter(Boolean)
    expect(written.length).toBe(lines.length + 1 - lost[0]!.count)
    expect(lost[0]!.count).toBeGreaterThan(lines.length / 2)
    // Whole lines, in order: the lost ones are a gap, never a torn line.
    const numbers = written.map((line) => (JSON.parse(line) as { line: number }).line)
    expect(numbers.slice(0, -1)).toEqual([...numbers.slice(0, -1)].sort((a, b) => a - b))
  })
})
