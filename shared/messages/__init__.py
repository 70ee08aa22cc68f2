"""The protobuf messages the roles exchange, wire compatible with the Squonk2 ones.

The `*_pb2` modules are generated from `protos/` by `make protos` (do not edit them):

- `pod_message_pb2.PodMessage`
- `pod_event_message_pb2.PodEventMessage`
- `processing_cost_message_pb2.ProcessingCostMessage`
- `storage_bytes_message_pb2.StorageBytesMessage`
- `merchant_processing_charge_message_pb2.MerchantProcessingChargeMessage`
- `merchant_storage_charge_message_pb2.MerchantStorageChargeMessage` and `StorageReasonEnum`
- `merchant_authority_request_response_message_pb2.MerchantAuthorityRequestResponseMessage`
  and `AuthorityResponseEnum`

`codec` turns a message into bytes (`application/protobuf` event data) and back.
"""
