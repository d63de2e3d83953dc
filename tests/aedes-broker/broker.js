// aedes (MQTT 3.1.1 only) on 127.0.0.1:PORT, sessions and retained
// messages in memory; prints "listening PORT" once it accepts, and one line
// per refused CONNECT with its reason.
import { Aedes } from 'aedes'
import { createServer } from 'node:net'

const port = Number(process.argv[2])
const broker = await Aedes.createBroker()
broker.on('connectionError', (client, err) => {
  console.log(`connection refused: ${err.message}`)
})
broker.on('client', (client) => console.log(`client connected: ${client.id}`))
const server = createServer(broker.handle)
server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`))
