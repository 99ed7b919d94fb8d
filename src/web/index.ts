/**
 * The pages (dashboard and inspector) and their assets.
 *
 * @module
 */
export { pageUrls } from './pageUrls.ts'
export { createWebRoutes } from './routes.ts'
