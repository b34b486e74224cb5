import type { LTILaunchConfig } from '@lti-tool/core';

export interface LaunchConfigCacheOptions {
  /** How long a launch config is served from memory, in ms (default 60000). */
  ttlMs?: number;
  /** Launch configs kept at most; the least recently used go first (default 100). */
  maxEntries?: number;
}

/**
 * Launch configs found by the storage, kept in this process. Misses are not kept, so a newly
 * registered platform is seen at once; a changed or deleted one may be served for up to
 * `ttlMs` (plus the storage's own bound) by a process that cached it.
 */
export class LaunchConfigCache {
  private readonly entries = new Map<string, { config: LTILaunchConfig; expiresAt: number }>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;

  constructor(options: LaunchConfigCacheOptions = {}, private readonly now: () => number = Date.now) {
    this.ttlMs = options.ttlMs ?? 60_000;
    this.maxEntries = options.maxEntries ?? 100;
    if (!Number.isFinite(this.ttlMs) || this.ttlMs < 0) {
      throw new RangeError('launchConfigCache.ttlMs must be a number of at least 0');
    }
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1) {
      throw new RangeError('launchConfigCache.maxEntries must be an integer of at least 1');
    }
  }

  get(key: string): LTILaunchConfig | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    if (entry.expiresAt <= this.now()) return undefined;
    this.entries.set(key, entry); // most recently used last
    return entry.config;
  }

  set(key: string, config: LTILaunchConfig): void {
    this.entries.delete(key);
    this.entries.set(key, { config, expiresAt: this.now() + this.ttlMs });
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) break;
      this.entries.delete(oldest);
    }
  }

  /** After a client or deployment write through this process: nothing cached is trusted. */
  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
