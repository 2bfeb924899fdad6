// Not run in CI (no Go module proxy is reachable from its machines, see ../README.md): an example
// of calling tokenmint from Go with stubs made by `buf generate`.
//
//	cd examples/go && buf generate ../../proto && go mod init example.com/tokenmint-client && go mod tidy
//	TOKEN=$(tokenmint bootstrap --user alice --scopes user_manage,token_introspect,wallet_view) go run .
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenmintv1 "example.com/tokenmint-client/gen/tokenmint/v1"
)

func main() {
	conn, err := grpc.NewClient("localhost:50051", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := tokenmintv1.NewTokenServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+os.Getenv("TOKEN"))

	created, err := client.CreateToken(ctx, &tokenmintv1.CreateTokenRequest{
		Label:  "from go",
		Scopes: []string{"wallet_view"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("minted", created.GetToken().GetId(), "checksum", created.GetToken().GetChecksum())

	verified, err := client.VerifyToken(ctx, &tokenmintv1.VerifyTokenRequest{Token: created.GetRawToken()})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("active:", verified.GetActive(), "reason:", verified.GetReason())

	// A bad request: read the ErrorInfo reason from the status details.
	_, err = client.CreateToken(ctx, &tokenmintv1.CreateTokenRequest{Label: "x", Scopes: []string{"bogus"}})
	for _, detail := range status.Convert(err).Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			fmt.Println("refused:", info.GetReason(), info.GetMetadata())
		}
	}
}
