/**
 * The pages (dashboard and inspector) and their assets.
 *
 * @module
 */
export { pageUrls, type PageUrls } from './pageUrls.ts'
export { createWebRoutes, type WebRoutesOptions } from './routes.ts'
