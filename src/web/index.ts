/**
 * The pages (dashboard and inspector) and their assets.
 *
 * @module
 */
export { createWebRoutes, type WebRoutesOptions } from './routes.ts'
