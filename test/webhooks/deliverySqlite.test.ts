/** Webhook delivery over the SQLite store (the suite is in deliveryContract.ts). */
import { describeDelivery, sqliteStores } from './deliveryContract.ts'

describeDelivery('SQLite', sqliteStores)
