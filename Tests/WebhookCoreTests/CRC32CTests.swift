import Testing
import WebhookCore

/// Published CRC-32C check values: the catalogue's "123456789" and RFC 3720's (iSCSI) appendix B.4 vectors.
@Suite struct CRC32CTests {
    static let vectors: [(bytes: [UInt8], crc: UInt32)] = [
        (Array("123456789".utf8), 0xE306_9283),
        ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        (Array(0...31), 0x46DD_794E),
        (Array((0...31).reversed()), 0x113F_DB5C),
        ([], 0),
    ]

    @Test(arguments: 0..<vectors.count)
    func knownAnswers(index: Int) {
        #expect(CRC32C.checksum(Self.vectors[index].bytes) == Self.vectors[index].crc)
    }

    @Test func continuesAcrossPieces() {
        let whole = Array("a journal record, checksummed in two pieces".utf8)
        #expect(CRC32C.checksum(whole[20...], continuing: CRC32C.checksum(whole[..<20])) == CRC32C.checksum(whole))
    }

    @Test func seesEveryBitFlip() {
        let record = Array(#"{"id":"x","length":3}\nabc"#.utf8)
        let crc = CRC32C.checksum(record)
        for index in record.indices {
            for bit in 0..<8 {
                var flipped = record
                flipped[index] ^= 1 << bit
                #expect(CRC32C.checksum(flipped) != crc)
            }
        }
    }
}
