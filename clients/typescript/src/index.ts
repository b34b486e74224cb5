export { LambdaStorage, type LambdaStorageOptions } from './lambdaStorage.js';
export { StorageError, STORAGE_ERROR_TYPES, type StorageErrorType } from './errors.js';
export type { RetryOptions } from './retry.js';
export type { LaunchConfigCacheOptions } from './launchConfigCache.js';
