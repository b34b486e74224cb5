export interface CacheOptions {
  /** How long an entry is served from memory, in ms. */
  ttlMs?: number;
  /** Entries kept at most; the least recently used go first. */
  maxEntries?: number;
}

/** `launchConfigCache`: defaults `ttlMs` 60000, `maxEntries` 100. */
export type LaunchConfigCacheOptions = CacheOptions;

/** `sessionCache`: defaults `ttlMs` 300000 (as `PostgresStorage`), `maxEntries` 1000. */
export type SessionCacheOptions = CacheOptions;

/**
 * Answers found by the storage, kept in this process for a while, least recently used out
 * first. Callers keep only hits: a miss kept here would hide what another process adds.
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; expiresAt: number }>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;

  /** `name` is the option's, for the errors; `defaults` fill what `options` leave out. */
  constructor(
    name: string,
    options: CacheOptions,
    defaults: Required<CacheOptions>,
    private readonly now: () => number = Date.now,
  ) {
    this.ttlMs = options.ttlMs ?? defaults.ttlMs;
    this.maxEntries = options.maxEntries ?? defaults.maxEntries;
    if (!Number.isFinite(this.ttlMs) || this.ttlMs < 0) {
      throw new RangeError(`${name}.ttlMs must be a number of at least 0`);
    }
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1) {
      throw new RangeError(`${name}.maxEntries must be an integer of at least 1`);
    }
  }

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    if (entry.expiresAt <= this.now()) return undefined;
    this.entries.set(key, entry); // most recently used last
    return entry.value;
  }

  set(key: string, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, { value, expiresAt: this.now() + this.ttlMs });
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) break;
      this.entries.delete(oldest);
    }
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}

/** An opt-in cache option (`true`, `false`/absent, or settings) as a cache or none. */
export function optionalCache<V>(
  name: string,
  option: boolean | CacheOptions | undefined,
  defaults: Required<CacheOptions>,
): TtlCache<V> | undefined {
  if (option === undefined || option === false) return undefined;
  return new TtlCache<V>(name, option === true ? {} : option, defaults);
}
