export { LambdaStorage, type CleanupResult, type LambdaStorageOptions } from './lambdaStorage.js';
export { StorageError, STORAGE_ERROR_TYPES, type StorageErrorType } from './errors.js';
export type { RetryOptions } from './retry.js';
export type { CacheOptions, LaunchConfigCacheOptions, SessionCacheOptions } from './cache.js';
export type { StorageLogger } from './logger.js';
